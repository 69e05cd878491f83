"""Voice activity: per-window speech probabilities of a media file's audio, streamed.

The detector is Silero VAD (the ``silero-vad`` package; its TorchScript model ships inside the
wheel, so nothing is downloaded). The audio track is decoded with PyAV and resampled to 16 kHz
mono on the fly, cut into 32 ms windows (512 samples) and scored one window after the other (the
model carries state from window to window); only the probabilities are kept, so memory does not
grow with the length of the file beyond one float per window.
`mesm.data.media.segments.speech_segments` turns the probabilities into segments.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
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


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Torch's intra-op thread count is `count` inside the block (None: unchanged) and what it
    was before after it. Silero scores one tiny window per call: a second thread only adds
    synchronisation (measured ~20x slower with 2 threads on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_vad_model() -> torch.jit.ScriptModule:
    """Silero VAD's TorchScript model from the installed package (offline).

    Raises:
        MissingDependencyError: silero-vad is not installed.
    """
    # Importing silero_vad sets torch's thread count to 1 for the whole process; undo it.
    with torch_threads(None):
        try:
            from silero_vad import load_silero_vad
        except ImportError as err:  # pragma: no cover - a declared dependency
            raise MissingDependencyError(
                "voice-activity segmentation needs: pip install silero-vad"
            ) from err
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
    with torch_threads(1):
        return _score(path, model, on_progress)


def _score(
    path: str | os.PathLike,
    model: torch.jit.ScriptModule,
    on_progress: Callable[[float], None] | None,
) -> tuple[np.ndarray, float, float]:
    first, chunks = iter_audio_16k(path)
    probs = _score_chunks(model, chunks, on_progress)
    if not len(probs):
        raise DataError(f"{path}: the audio track has no samples")
    return probs, first, float(Fraction(VAD_WINDOW, VAD_RATE))


def _score_chunks(
    model: torch.jit.ScriptModule,
    chunks: Iterable[np.ndarray],
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """(W,) float32 probabilities of consecutive 16 kHz samples, window after window (the last
    window zero-padded)."""
    model.reset_states()
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
    return np.asarray(probs, dtype=np.float32)


@torch.inference_mode()
def batch_speech_probabilities(
    waveforms: list[np.ndarray], model: torch.jit.ScriptModule | None = None
) -> list[np.ndarray]:
    """:func:`waveform_speech_probabilities` of several waveforms at once.

    The model scores one window of every waveform per call (the shorter ones zero-padded at
    the end, their extra windows dropped), so a batch of utterances costs about as many calls
    as its longest one; each result equals the one-by-one result to float rounding.

    Args:
        waveforms: B (N_b,) float arrays at 16 kHz.
        model: a loaded Silero model (None: load it).

    Returns:
        B (W_b,) float32 arrays, W_b = ceil(N_b / VAD_WINDOW).
    """
    model = model or load_vad_model()
    counts = [-(-len(w) // VAD_WINDOW) for w in waveforms]
    width = max(counts, default=0)
    if width == 0:
        return [np.zeros(0, dtype=np.float32) for _ in waveforms]
    padded = np.zeros((len(waveforms), width * VAD_WINDOW), dtype=np.float32)
    for row, wave in enumerate(waveforms):
        padded[row, : len(wave)] = np.asarray(wave, dtype=np.float32).reshape(-1)
    with torch_threads(1 if len(waveforms) < 32 else None):  # a small batch: a tiny workload
        model.reset_states()
        scores = np.empty((len(waveforms), width), dtype=np.float32)
        for k in range(width):
            window = torch.from_numpy(padded[:, k * VAD_WINDOW : (k + 1) * VAD_WINDOW])
            scores[:, k] = model(window, VAD_RATE).reshape(-1).float().numpy()
    return [scores[row, :count].copy() for row, count in enumerate(counts)]


@torch.inference_mode()
def waveform_speech_probabilities(
    waveform: np.ndarray, model: torch.jit.ScriptModule | None = None
) -> np.ndarray:
    """Speech probabilities of a 16 kHz mono waveform already in memory (an utterance).

    Args:
        waveform: (N,) float samples at 16 kHz.
        model: a loaded Silero model (None: load it).

    Returns:
        (W,) float32, one per ``VAD_STEP`` window from the first sample (empty for no samples).
    """
    model = model or load_vad_model()
    with torch_threads(1):
        return _score_chunks(model, [np.asarray(waveform, dtype=np.float32).reshape(-1)])
