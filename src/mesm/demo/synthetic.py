"""Synthetic media for tests, benchmarks and the demo: drawn faces, speech-like audio, corpora.

Nothing here resembles real emotion data; it exercises every code path with known answers
(frame times, durations, labels) and lets the whole pipeline run offline in seconds.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from mesm.data.manifest import DatasetInfo, Record, write_dataset
from mesm.data.media.video import h264_or_fallback
from mesm.files import atomic_target

_AUDIO_CODEC = {".mp4": "aac", ".m4a": "aac", ".mov": "aac"}
_VIDEO_CODEC = {".avi": "mpeg4"}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    codec: str | None = None,
    rotation: int = 0,
) -> Path:
    """Encode frames (and optionally an audio track) with PyAV.

    Frame i gets pts i in time base 1/fps, so its timestamp is exactly i / fps.

    Args:
        path: output file; the suffix picks the container (.mp4: H.264 + AAC, .avi: MPEG-4 part 2
            + PCM, .mkv/.mov: H.264 + PCM/AAC).
        frames: (T, H, W, 3) uint8 RGB; H and W must be even.
        fps: frame rate (fractional rates such as 30000/1001 are kept exactly up to 1/1001).
        audio: (N,) or (N, C) float samples in [-1, 1], or None for a silent file.
        sample_rate: of `audio`.
        codec: video codec name overriding the default for the suffix.
        rotation: a display-matrix rotation in degrees counter-clockwise (a phone's portrait
            video: the pictures stored sideways, the player told to turn them); 0: none.

    Returns:
        The path written.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame height and width must be even, got {frames.shape[1:3]}")
    suffix = path.suffix.lower()
    rate = Fraction(fps).limit_denominator(1001)
    # Written under a temporary name, so the container format is named, not guessed from it.
    container_format = {".mkv": "matroska"}.get(suffix, suffix.lstrip("."))
    with (
        atomic_target(path) as tmp,
        av.open(str(tmp), mode="w", format=container_format) as container,
    ):
        vcodec = codec or _VIDEO_CODEC.get(suffix) or h264_or_fallback()
        vstream = container.add_stream(vcodec, rate=rate)
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        vstream.time_base = 1 / rate
        if rotation:
            vstream.set_display_rotation(rotation)
        # Near-lossless so tests can check pixel colours after decoding.
        if vcodec == "libx264":
            vstream.options = {"crf": "10", "preset": "ultrafast"}
        else:
            vstream.bit_rate = 8_000_000
        astream = None
        if audio is not None:
            astream = container.add_stream(_AUDIO_CODEC.get(suffix, "pcm_s16le"), rate=sample_rate)
            channels = 1 if np.ndim(audio) == 1 else np.shape(audio)[1]
            astream.layout = "mono" if channels == 1 else "stereo"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode())
        if astream is not None:
            _encode_audio(container, astream, np.asarray(audio, dtype=np.float32), sample_rate)
    return path


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    planar = audio[None, :] if audio.ndim == 1 else audio.T  # (C, N)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    step = stream.codec_context.frame_size or 1024
    for first in range(0, planar.shape[1], step):
        chunk = np.ascontiguousarray(planar[:, first : first + step])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = first
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_wav(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int = 16000) -> Path:
    """Write (N,) or (N, C) float samples in [-1, 1] as 16-bit PCM WAV."""
    path = Path(path)
    with atomic_target(path) as tmp:
        data = np.asarray(waveform, dtype=np.float32)
        sf.write(str(tmp), data, sample_rate, subtype="PCM_16", format="WAV")
    return path


def face_frames(
    count: int,
    fps: float,
    *,
    height: int = 96,
    width: int = 96,
    seed: int = 0,
    background: tuple[int, int, int] = (70, 90, 120),
) -> np.ndarray:
    """A drawn face drifting sideways and talking (its mouth opens and closes at 4 Hz).

    Shaded skin, hair, eyes with pupils, brows, nose and mouth: enough for MTCNN to detect it at
    96 px and above (probability > 0.97), so synthetic corpora exercise real face crops.

    Returns:
        (count, height, width, 3) uint8 RGB.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    skin = np.array([214, 160, 130], np.float32) * rng.uniform(0.85, 1.05)
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        t = i / fps
        out[i] = _draw_face(xx, yy, face_centre(t, height, width, phase), skin, t, background)
    return out


def face_centre(t: float, height: int, width: int, phase: float) -> tuple[float, float]:
    """Where `face_frames` puts the face centre (x, y) at time t (for tests that track it)."""
    return width / 2 + 0.06 * width * math.sin(
        2 * math.pi * 0.3 * t + phase
    ), height / 2 + 0.03 * height


def _draw_face(
    xx: np.ndarray,
    yy: np.ndarray,
    centre: tuple[float, float],
    skin: np.ndarray,
    t: float,
    background: tuple[int, int, int],
    opening: float | None = None,
) -> np.ndarray:
    height, width = xx.shape
    cx, cy = centre
    ry, rx = 0.34 * height, 0.26 * width
    img = np.empty((height, width, 3), np.float32)
    img[:] = background
    dist = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    shade = np.clip(1.05 - 0.35 * dist, 0.6, 1.1)[..., None]  # rounder look helps the detector
    img = np.where((dist <= 1)[..., None], skin * shade, img)
    hair = (((xx - cx) / (rx * 1.08)) ** 2 + ((yy - cy + 0.12 * ry) / (ry * 1.05)) ** 2 <= 1) & (
        yy < cy - 0.45 * ry
    )
    img[hair] = (50, 35, 25)
    for side in (-1, 1):
        ex, ey = cx + side * 0.38 * rx, cy - 0.18 * ry
        img[((xx - ex) / (0.2 * rx)) ** 2 + ((yy - ey) / (0.09 * ry)) ** 2 <= 1] = (235, 235, 235)
        img[(xx - ex) ** 2 + (yy - ey) ** 2 <= (0.08 * rx) ** 2] = (40, 30, 30)
        brow = (np.abs(yy - (ey - 0.16 * ry)) < 0.03 * ry + 1) & (np.abs(xx - ex) < 0.22 * rx)
        img[brow] = (60, 40, 30)
    nose = (np.abs(xx - cx) < 0.06 * rx + 0.1 * (yy - cy)) & (yy > cy - 0.05 * ry)
    nose &= yy < cy + 0.25 * ry
    img[nose] *= 0.8
    if opening is None:
        opening = 0.05 + 0.06 * (0.5 + 0.5 * math.sin(2 * math.pi * 4 * t))
    mouth = ((xx - cx) / (0.32 * rx)) ** 2 + (
        (yy - (cy + 0.48 * ry)) / (opening * ry + 1)
    ) ** 2 <= 1
    img[mouth] = (150, 60, 60)
    return np.clip(img, 0, 255).astype(np.uint8)


def two_face_frames(
    count: int,
    *,
    talking: int,
    sizes: tuple[int, int] = (128, 96),
    seed: int = 0,
    background: tuple[int, int, int] = (70, 90, 120),
) -> np.ndarray:
    """Two drawn faces side by side, one talking (its mouth opening changes every frame) and the
    other silent (mouth still), e.g. a larger listener next to a smaller speaker.

    Args:
        count: frames.
        talking: which face talks: 0 (left) or 1 (right); -1: neither.
        sizes: the side of each face's square tile (the frame is as high as the larger tile).
        seed: skin tones and mouth openings are drawn from it.
        background: RGB of the background.

    Returns:
        (count, max(sizes), sum(sizes), 3) uint8 RGB.
    """
    rng = np.random.default_rng(seed)
    height = max(sizes)
    out = np.empty((count, height, sum(sizes), 3), dtype=np.uint8)
    out[:] = background
    skins = [np.array([214, 160, 130], np.float32) * rng.uniform(0.8, 1.05) for _ in sizes]
    openings = rng.uniform(0.01, 0.16, count)
    for i in range(count):
        left = 0
        for k, side in enumerate(sizes):
            yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
            opening = float(openings[i]) if k == talking else 0.05
            tile = _draw_face(
                xx, yy, (side / 2, side / 2 + 0.03 * side), skins[k], 0.0, background, opening
            )
            top = (height - side) // 2
            out[i, top : top + side, left : left + side] = tile
            left += side
    return out


def speech_like(duration: float, sample_rate: int = 16000, *, seed: int = 0) -> np.ndarray:
    """Voiced harmonics with a gliding pitch and ~4 Hz syllable envelope, plus a little noise.

    Returns:
        (round(duration · sample_rate),) float32 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n = round(duration * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(110, 220) * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None) ** 2
    signal = 0.25 * voice * envelope + 0.01 * rng.standard_normal(n)
    return np.clip(signal, -1, 1).astype(np.float32)


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    num_utterances: int = 8,
    *,
    label_names: tuple[str, ...] = ("ang", "hap", "neu", "sad"),
    task: str = "single_label",
    fps: float = 10,
    duration: tuple[float, float] = (1.0, 2.0),
    size: int = 96,
    splits: tuple[str, ...] = ("train", "train", "valid", "test"),
    embedded_audio_every: int = 2,
    seed: int = 0,
) -> tuple[DatasetInfo, list[Record]]:
    """Write a small dataset folder of drawn-face clips with speech-like audio and transcripts.

    Every `embedded_audio_every`-th clip carries its audio inside the mp4 (record ``audio`` is
    null); the others get a separate 16 kHz WAV. Labels cycle through `label_names` (for
    multi-label, utterance i has labels i mod K and, if i is odd, (i + 1) mod K).

    Returns:
        The header and records written (also on disk as dataset.json + manifest.jsonl).
    """
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = "well I really did not expect that to happen today at all".split()
    records = []
    for i in range(num_utterances):
        uid = f"utt{i:04d}"
        seconds = float(np.round(rng.uniform(*duration), 2))
        frames = face_frames(round(seconds * fps), fps, height=size, width=size, seed=seed + i)
        audio = speech_like(seconds, 16000, seed=seed + i)
        embedded = embedded_audio_every > 0 and i % embedded_audio_every == 0
        write_video(out / "clips" / f"{uid}.mp4", frames, fps, audio if embedded else None)
        if not embedded:
            write_wav(out / "clips" / f"{uid}.wav", audio, 16000)
        k = len(label_names)
        labels = [label_names[i % k]]
        if task == "multi_label" and i % 2 == 1:
            labels.append(label_names[(i + 1) % k])
        text = " ".join(rng.choice(words, size=int(rng.integers(3, 9))))
        records.append(
            Record(
                id=uid,
                video=f"clips/{uid}.mp4",
                audio=None if embedded else f"clips/{uid}.wav",
                text=text,
                labels=tuple(labels),
                speaker=f"spk{i % 3}",
                split=splits[i % len(splits)] if splits else None,
            )
        )
    info = DatasetInfo(
        name="synthetic",
        task=task,  # type: ignore[arg-type]
        label_names=tuple(label_names),
        prepare={"generator": "mesm.demo.synthetic", "seed": seed, "fps": fps},
    )
    write_dataset(out, info, records)
    return info, records
