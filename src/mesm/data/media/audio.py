"""Audio: decoding (soundfile or a video's own track via PyAV), resampling, mel-spectrogram chunks.

The mel-spectrogram equals ``torchaudio.transforms.MelSpectrogram`` as the paper used it
(sample_rate 16000, n_fft 400, win_length 400, hop_length 200, n_mels 128, power 2, centred
frames with reflect padding, periodic Hann window, HTK mel scale without filter normalisation,
f_min 0, f_max sr/2, no log), written with `torch.stft` and our own filterbank so torchaudio is
not needed. The spectrogram is cut along time into chunks of 32 frames (2 × 200 hop ≈ 0.4 s of
audio per chunk), the last one zero-padded: (S, 1, 128, 32).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from mesm.data.errors import DataError
from mesm.data.manifest import Record, resolve

if TYPE_CHECKING:
    from mesm.data.media.cache import PreprocessSettings


def load_audio(
    path: str | os.PathLike, *, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """Read an audio file (any format soundfile reads), mixed down to mono.

    Args:
        path: the audio file.
        start: span start in seconds (None: from the beginning).
        end: span end in seconds, exclusive (None: to the end).

    Returns:
        The waveform (N,) float32 and its sample rate.

    Raises:
        DataError: unreadable file, or no samples in the span.
    """
    try:
        info = sf.info(str(path))
        sr = info.samplerate
        first = 0 if start is None else round(start * sr)
        last = info.frames if end is None else min(round(end * sr), info.frames)
        if last <= first:
            raise DataError(f"{path}: no audio samples in the time span [{start}, {end}) s")
        data, _ = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise DataError(f"{path}: cannot read audio ({err})") from None
    return data.mean(axis=1), sr


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of an audio file soundfile reads (from its header).

    Raises:
        DataError: unreadable file.
    """
    try:
        return sf.info(str(path)).duration
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise DataError(f"{path}: cannot read audio ({err})") from None


# How to give the speech of a clip without an audio track, wherever the clip came from.
SEPARATE_AUDIO = (
    "(give a separate audio file: `--audio` on the command line, 'audio' in a manifest)"
)


def load_video_audio(
    path: str | os.PathLike, *, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode a video's own audio track with PyAV, mixed down to mono.

    Args:
        path: a media file with an audio stream.
        start: span start in seconds (None: from the beginning).
        end: span end in seconds, exclusive (None: to the end).

    Returns:
        The waveform (N,) float32 and its sample rate.

    Raises:
        DataError: no audio stream, undecodable stream, or no samples in the span.
    """
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise DataError(f"{path}: cannot open media ({err})") from None
    pieces: list[np.ndarray] = []
    with container:
        if not container.streams.audio:
            raise DataError(f"{path}: has no audio track {SEPARATE_AUDIO}")
        stream = container.streams.audio[0]
        sr = stream.rate or stream.codec_context.sample_rate
        if stream.duration is not None and stream.time_base is not None:
            # Encoders pad the last frame (AAC: to 1024 samples); the stream's duration does not.
            stream_end = float((stream.duration + (stream.start_time or 0)) * stream.time_base)
            end = stream_end if end is None else min(end, stream_end)
        # Samples before 0 s are encoder priming that the demuxer did not trim.
        start = 0.0 if start is None else start
        if start is not None and start > 1:
            try:
                container.seek(int((start - 1) * av.time_base))
            except av.FFmpegError:
                container.seek(0)
        # Planar float keeps every channel apart, so the mono mix is ours (a plain mean).
        to_float = av.AudioResampler(format="fltp")
        next_sample: int | None = None
        try:
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    data = out.to_ndarray()  # (channels, n)
                    if out.pts is not None and out.time_base is not None:
                        first = round(Fraction(out.pts) * out.time_base * sr)
                    else:
                        first = next_sample or 0
                    next_sample = first + data.shape[1]
                    pieces.append(_clip(data, first, sr, start, end))
                if end is not None and next_sample is not None and next_sample >= end * sr:
                    break
        except av.FFmpegError as err:
            raise DataError(f"{path}: corrupt or truncated audio track ({err})") from None
    mono = np.concatenate(pieces, axis=1).mean(axis=0) if pieces else np.zeros(0, np.float32)
    if mono.size == 0:
        raise DataError(f"{path}: no audio samples in the time span [{start}, {end}) s")
    return mono.astype(np.float32), sr


def _clip(
    data: np.ndarray, first: int, sr: int, start: float | None, end: float | None
) -> np.ndarray:
    lo = 0 if start is None else max(0, round(start * sr) - first)
    hi = data.shape[1] if end is None else max(0, min(data.shape[1], round(end * sr) - first))
    return data[:, lo:hi] if hi > lo else data[:, :0]


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int, *, width: int = 16) -> torch.Tensor:
    """Band-limited resampling with a Hann-windowed sinc filter (polyphase, as strided conv).

    The anti-aliasing cutoff is 0.97 × the lower Nyquist frequency; `width` zero crossings on
    each side trade sharpness for time.

    Args:
        waveform: (N,) samples at `orig_sr`.
        orig_sr: input sample rate.
        new_sr: output sample rate.
        width: zero crossings of the sinc on each side.

    Returns:
        (ceil(N · new_sr / orig_sr),) samples at `new_sr`, same dtype.
    """
    if orig_sr == new_sr:
        return waveform
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    cutoff = min(up, down) / down * 0.97  # 2 × cutoff in cycles per input sample
    half = math.ceil(width / cutoff)  # taps on each side, in input samples
    out_len = math.ceil(waveform.shape[-1] * up / down)
    x = waveform.to(torch.float64)
    if up > 512:
        # Odd rate pairs (e.g. 44056 → 16000) would need a huge polyphase kernel.
        return _resample_direct(x, down / up, cutoff, half, out_len).to(waveform.dtype)
    # Output phase j of a period sits at input position j·down/up; its taps cover k - j·down/up.
    taps = torch.arange(-half, half + down, dtype=torch.float64)
    offsets = torch.arange(up, dtype=torch.float64)[:, None] * down / up
    kernel = _windowed_sinc(taps[None, :] - offsets, cutoff, half)  # (up, K)
    signal = F.pad(x[None, None], (half, half + down))
    out = F.conv1d(signal, kernel[:, None, :], stride=down)  # (1, up, periods)
    return out[0].t().reshape(-1)[:out_len].to(waveform.dtype)


def _windowed_sinc(x: torch.Tensor, cutoff: float, half: int) -> torch.Tensor:
    window = torch.where(
        x.abs() <= half, 0.5 + 0.5 * torch.cos(math.pi * x / half), torch.zeros_like(x)
    )
    return cutoff * torch.sinc(cutoff * x) * window


def _resample_direct(
    x: torch.Tensor, step: float, cutoff: float, half: int, out_len: int, block: int = 4096
) -> torch.Tensor:
    padded = F.pad(x, (half + 1, half + 2))
    offsets = torch.arange(-half, half + 2, dtype=torch.float64)
    out = []
    for first in range(0, out_len, block):
        pos = torch.arange(first, min(first + block, out_len), dtype=torch.float64) * step
        base = pos.floor()
        idx = base[:, None] + offsets  # (n, taps) input indices around each output position
        weights = _windowed_sinc(idx - pos[:, None], cutoff, half)
        out.append((padded[(idx + half + 1).long()] * weights).sum(dim=1))
    return torch.cat(out)


def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: 2595 · log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + freq / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of `hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_edges(
    n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """(n_mels + 2,) float64 Hz: the filters' edges, equally spaced on the HTK mel scale; filter
    i rises from edge i, peaks at edge i + 1 (its centre) and falls to edge i + 2.

    Args:
        f_max: the highest edge (None: sample_rate / 2).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    mels = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min, dtype=torch.float64))),
        float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    return mel_to_hz(mels)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK mel filters without area normalisation (torchaudio's `norm=None`).

    Args:
        n_freqs: STFT bins, n_fft // 2 + 1, spanning 0 .. sample_rate // 2.
        n_mels: number of filters.
        sample_rate: in Hz.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz (None: sample_rate / 2).

    Returns:
        (n_freqs, n_mels) float64 weights.
    """
    bins = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    edges = mel_edges(n_mels, sample_rate, f_min, f_max)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def mel_spectrogram(
    waveform: torch.Tensor,
    *,
    sample_rate: int = 16000,
    n_fft: int = 400,
    win_length: int = 400,
    hop_length: int = 200,
    n_mels: int = 128,
    power: float = 2.0,
    f_min: float = 0.0,
    f_max: float | None = None,
    log: bool = False,
    log_eps: float = 1e-6,
) -> torch.Tensor:
    """Mel-spectrogram with torchaudio's `MelSpectrogram` semantics (see the module docstring).

    Audio shorter than n_fft // 2 + 1 samples is zero-padded to that length first, because
    reflect padding needs it.

    Args:
        waveform: (N,) mono samples at `sample_rate`.
        log: return log(mel + log_eps) instead of the power mel-spectrogram.

    Returns:
        (n_mels, 1 + N // hop_length) float32.
    """
    x = waveform.to(torch.float64)
    if x.shape[-1] <= n_fft // 2:
        x = F.pad(x, (0, n_fft // 2 + 1 - x.shape[-1]))
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    ).abs()  # (n_fft // 2 + 1, frames)
    if power != 1.0:
        spec = spec.pow(power)
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max)
    mel = fb.t() @ spec
    if log:
        mel = torch.log(mel + log_eps)
    return mel.to(torch.float32)


def chunk_spectrogram(spec: torch.Tensor, chunk_frames: int = 32) -> torch.Tensor:
    """Cut a spectrogram into fixed-width chunks along time, zero-padding the last.

    Args:
        spec: (n_mels, F).
        chunk_frames: width of each chunk in frames.

    Returns:
        (S, 1, n_mels, chunk_frames) with S = ceil(F / chunk_frames).
    """
    n_mels, frames = spec.shape
    count = max(1, -(-frames // chunk_frames))
    padded = F.pad(spec, (0, count * chunk_frames - frames))
    return padded.reshape(n_mels, count, chunk_frames).permute(1, 0, 2).unsqueeze(1).contiguous()


def mel_chunks(waveform: torch.Tensor, settings: PreprocessSettings) -> torch.Tensor:
    """The mel-spectrogram of `settings`, cut into chunks.

    Args:
        waveform: (N,) mono samples at ``settings.sample_rate``.
        settings: the preprocessing settings (mel parameters, log, chunk width).

    Returns:
        (S, 1, n_mels, chunk_frames) float32, the last chunk zero-padded.
    """
    mel = mel_spectrogram(
        waveform,
        sample_rate=settings.sample_rate,
        n_fft=settings.n_fft,
        win_length=settings.win_length,
        hop_length=settings.hop_length,
        n_mels=settings.n_mels,
        log=settings.log_mel,
        log_eps=settings.log_eps,
    )
    return chunk_spectrogram(mel, settings.chunk_frames)


def check_waveform(waveform: np.ndarray, source: str | Path) -> None:
    """Refuse audio that would make a silently wrong sample.

    Raises:
        DataError: empty, or containing NaN or infinite samples.
    """
    if waveform.size == 0:
        raise DataError(f"{source}: the audio has no samples")
    bad = ~np.isfinite(waveform)
    if bad.any():
        raise DataError(
            f"{source}: the audio contains {int(bad.sum())} NaN/infinite sample(s) "
            f"(first at sample {int(np.argmax(bad))})"
        )


def load_waveform(root: Path, record: Record, sample_rate: int = 16000) -> torch.Tensor:
    """A record's mono audio at `sample_rate`: its audio file, or its video's own track.

    Returns:
        (N,) float32 waveform.

    Raises:
        DataError: naming the record.
    """
    video = resolve(root, record.video)
    try:
        if record.audio is not None:
            source = resolve(root, record.audio)
            waveform, sr = load_audio(source, start=record.start, end=record.end)
        elif video.is_dir():
            raise DataError(f"{video}: a frame folder has no audio track {SEPARATE_AUDIO}")
        else:
            source = video
            waveform, sr = load_video_audio(video, start=record.start, end=record.end)
        check_waveform(waveform, source)
    except DataError as err:
        raise DataError(f"record {record.id!r}: {err}") from None
    return resample(torch.from_numpy(waveform), sr, sample_rate)
