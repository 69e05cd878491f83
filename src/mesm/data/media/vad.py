"""Voice activity: per-window speech probabilities of a media file's audio, streamed.

The detector is Silero VAD (the ``silero-vad`` package; its TorchScript model ships inside the
wheel, so nothing is downloaded). The audio track is decoded with PyAV and resampled to 16 kHz
mono on the fly, cut into 32 ms windows (512 samples) and scored one window after the other (the
model carries state from window to window); only the probabilities are kept, so memory does not
grow with the length of the file beyond one float per window.
`mesm.data.media.segments.speech_segments` turns the probabilities into segments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from mesm.data.errors import DataError
from mesm.data.media.audio import SEPARATE_AUDIO
from mesm.errors import MissingDependencyError

VAD_RATE = 16000
VAD_WINDOW = 512  # samples per window at 16 kHz (what the model accepts)
VAD_STEP = VAD_WINDOW / VAD_RATE  # 0.032 s


def load_vad_model() -> torch.jit.ScriptModule:
    """Silero VAD's TorchScript model from the installed package (offline).

    Raises:
        MissingDependencyError: silero-vad is not installed.
    """
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise MissingDependencyError(
            "voice-activity segmentation needs: pip install silero-vad"
        ) from err
    finally:
        # Importing silero_vad sets torch's thread count to 1 for the whole process; undo it.
        torch.set_num_threads(threads)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return load_silero_vad()


def iter_audio_16k(path: str | os.PathLike) -> tuple[float, Iterator[np.ndarray]]:
    """Open a media file's first audio stream for 16 kHz mono decoding.

    Returns:
        (time of the first sample in seconds, generator of (n,) float32 arrays).

    Raises:
        DataError: unreadable file or no audio stream.
    """
    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise DataError(f"{path}: cannot open media ({err})") from None
    if not container.streams.audio:
        container.close()
        raise DataError(f"{path}: has no audio track {SEPARATE_AUDIO}")
    stream = container.streams.audio[0]
    first = 0.0
    if stream.start_time is not None and stream.time_base is not None:
        first = max(0.0, float(stream.start_time * stream.time_base))

    def chunks() -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=VAD_RATE)
        with container:
            try:
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        yield out.to_ndarray().reshape(-1)
                for out in resampler.resample(None):
                    yield out.to_ndarray().reshape(-1)
            except av.FFmpegError as err:
                raise DataError(f"{path}: corrupt or truncated audio track ({err})") from None

    return first, chunks()


@torch.inference_mode()
def speech_probabilities(
    path: str | os.PathLike,
    *,
    model: torch.jit.ScriptModule | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, float, float]:
    """Per-window speech probabilities of a media file's audio track, in one streaming pass.

    Args:
        path: a video or audio file.
        model: a loaded Silero model (None: load it).
        on_progress: called with the seconds of audio scored so far, now and then.

    Returns:
        (probs (W,) float32, offset of the first window in seconds, window length in seconds).
    """
    model = model or load_vad_model()
    threads = torch.get_num_threads()
    # One window is a tiny workload: a second thread only adds synchronisation (measured ~20x
    # slower with 2 threads on a busy 2-core machine).
    torch.set_num_threads(1)
    try:
        return _score(path, model, on_progress)
    finally:
        torch.set_num_threads(threads)


def _score(
    path: str | os.PathLike,
    model: torch.jit.ScriptModule,
    on_progress: Callable[[float], None] | None,
) -> tuple[np.ndarray, float, float]:
    model.reset_states()
    first, chunks = iter_audio_16k(path)
    probs: list[float] = []
    pending = np.zeros(0, dtype=np.float32)
    for chunk in chunks:
        pending = np.concatenate([pending, chunk.astype(np.float32)])
        usable = len(pending) // VAD_WINDOW * VAD_WINDOW
        for k in range(0, usable, VAD_WINDOW):
            window = torch.from_numpy(pending[k : k + VAD_WINDOW].copy())
            probs.append(float(model(window, VAD_RATE)))
        pending = pending[usable:]
        if on_progress is not None and usable:
            on_progress(len(probs) * VAD_STEP)
    if len(pending):
        last = np.zeros(VAD_WINDOW, dtype=np.float32)
        last[: len(pending)] = pending
        probs.append(float(model(torch.from_numpy(last), VAD_RATE)))
    if not probs:
        raise DataError(f"{path}: the audio track has no samples")
    return np.asarray(probs, dtype=np.float32), first, float(Fraction(VAD_WINDOW, VAD_RATE))


@torch.inference_mode()
def waveform_speech_probabilities(
    waveform: np.ndarray, model: torch.jit.ScriptModule | None = None
) -> np.ndarray:
    """Per-window speech probabilities of a waveform held in memory (one utterance's audio).

    Args:
        waveform: (N,) float32 mono samples at 16 kHz (`VAD_RATE`).
        model: a loaded Silero model (None: load it).

    Returns:
        (ceil(N / 512),) float32, window k covering samples [512 k, 512 (k + 1)).
    """
    model = model or load_vad_model()
    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    count = -(-len(samples) // VAD_WINDOW)
    padded = np.zeros(count * VAD_WINDOW, dtype=np.float32)
    padded[: len(samples)] = samples
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `speech_probabilities`: one window is a tiny workload
    try:
        model.reset_states()
        windows = torch.from_numpy(padded).view(count, VAD_WINDOW)
        return np.asarray([float(model(w, VAD_RATE)) for w in windows], dtype=np.float32)
    finally:
        torch.set_num_threads(threads)
