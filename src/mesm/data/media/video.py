"""Frames sampled at a fixed interval from a video file or a frame folder, by real timestamps.

A frame's time is its presentation timestamp (pts × time_base) for video files, and comes from
``timestamps.txt`` or ``fps`` for frame folders (see `mesm.data.manifest`); nothing assumes 30 fps.
Sampling keeps, for each target time ``origin + k × interval`` (origin = the span's start, or the
first frame's time without a span), the first frame whose time is at or after the target, so a
10 fps clip of 2 s sampled every 500 ms gives the frames at 0.0, 0.5, 1.0 and 1.5 s. A frame that
would be picked for two targets (video slower than the interval) is kept once.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from mesm.data.errors import DataError
from mesm.data.manifest import IMAGE_SUFFIXES, TIMESTAMPS_FILE, Record, resolve

# Timestamps written as decimals (timestamps.txt, manifests) may be off by rounding.
_EPS = Fraction(1, 1_000_000)
# What every reader of video files says of a file without a video stream.
NO_VIDEO_STREAM = "has no video stream (an audio-only or subtitle file?)"
Item = TypeVar("Item")


@dataclass
class Frames:
    """Sampled RGB frames of one utterance.

    Attributes:
        images: T arrays (H, W, 3) uint8, in time order (a list: sizes may differ in odd files).
        timestamps: (T,) float64 seconds on the source's clock (not relative to the span).
    """

    images: list[np.ndarray]
    timestamps: np.ndarray


def sample_frames(
    path: str | os.PathLike,
    *,
    interval_ms: float = 500,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    frame_pattern: str | None = None,
) -> Frames:
    """Sample one frame every `interval_ms` from a video file or frame folder.

    Args:
        path: a video file (any container ffmpeg reads) or a folder of images.
        interval_ms: the sampling interval in milliseconds (the paper's `img_interval`, 500).
        start: span start in seconds (None: from the beginning).
        end: span end in seconds, exclusive (None: to the end).
        fps: frame rate of a frame folder without ``timestamps.txt``.
        frame_pattern: glob selecting a frame folder's images.

    Returns:
        The sampled frames and their timestamps.

    Raises:
        DataError: unreadable/corrupt media, or no frame inside the span.
    """
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    path = Path(path)
    interval = Fraction(str(interval_ms)) / 1000
    lo = None if start is None else Fraction(str(start))
    hi = None if end is None else Fraction(str(end))
    if path.is_dir():
        frames = _sample_folder(path, interval, lo, hi, fps, frame_pattern)
    else:
        frames = _sample_video(path, interval, lo, hi)
    if not frames.images:
        span = f"[{start if start is not None else 0}, {end if end is not None else 'end'})"
        raise DataError(f"{path}: no video frames in the time span {span} s")
    return frames


def record_frames(root: Path, record: Record, interval_ms: float) -> Frames:
    """A manifest record's frames, one every `interval_ms` within its span.

    Args:
        root: the dataset folder.
        record: the utterance (its video, span, ``fps`` and ``frame_pattern`` apply).
        interval_ms: the sampling interval in milliseconds.

    Raises:
        DataError: naming the file and the record.
    """
    video = resolve(root, record.video)
    try:
        return sample_frames(
            video,
            interval_ms=interval_ms,
            start=record.start,
            end=record.end,
            fps=record.fps,
            frame_pattern=record.frame_pattern,
        )
    except DataError as err:
        raise DataError(f"record {record.id!r}: {err}") from None


def first_video_stream(container: av.container.InputContainer, path: object) -> av.VideoStream:
    """The container's first video stream; every reader of video files finds it here, so a
    file without one gets the same message everywhere.

    Raises:
        DataError: the file has no video stream (naming it).
    """
    if not container.streams.video:
        raise DataError(f"{path}: {NO_VIDEO_STREAM}")
    return container.streams.video[0]


def upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, turned the way it is meant to be shown.

    Phones store portrait video as landscape pictures plus a display matrix saying how far to
    turn them; players honour it, and so do we (`frame.rotation`: degrees counter-clockwise, a
    multiple of 90 in practice; other angles and mirroring are not applied).
    """
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def video_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of a video file's first video stream (from its metadata)."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise DataError(f"{path}: cannot open video ({_short(err)})") from None
    with container:
        stream = first_video_stream(container, path)
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
    raise DataError(f"{path}: the container records no duration")


def select_by_interval(
    items: Iterable[tuple[Fraction, Item]], interval: Fraction, origin: Fraction | None
) -> Iterator[tuple[Fraction, Item]]:
    """Keep, from (time, item) pairs in ascending time, those the sampling rule picks.

    Args:
        items: (time in seconds, anything) pairs, ascending in time.
        interval: the sampling interval in seconds.
        origin: the first target time (None: the first item's time).
    """
    target = origin
    for t, item in items:
        if target is None:
            target = t
        if t + _EPS >= target:
            yield t, item
            # Skip every target this frame already covers, so gaps never produce duplicates.
            target += ((t + _EPS - target) // interval + 1) * interval


def iter_video_frames(
    path: Path, start: Fraction | None = None, end: Fraction | None = None
) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Decoded frames of a video file inside [start, end) with their times in seconds.

    Raises:
        DataError: if the file cannot be opened/decoded or has no video stream.
    """
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise DataError(f"{path}: cannot open video ({_short(err)})") from None
    with container:
        stream = first_video_stream(container, path)
        base = stream.time_base or Fraction(1, av.time_base)
        if start is not None and start > 1:
            try:
                # Seek to the keyframe before `start` (backward); decoding then skips forward.
                container.seek(int((start - 1) / base), stream=stream, backward=True)
            except av.FFmpegError:
                container.seek(0, stream=stream)
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    t = Fraction(frame.pts) * base
                elif stream.average_rate:
                    t = Fraction(index) / Fraction(stream.average_rate)
                else:
                    raise DataError(f"{path}: frames carry no timestamps and no frame rate")
                index += 1
                if start is not None and t + _EPS < start:
                    continue
                if end is not None and t + _EPS >= end:
                    break
                yield t, frame
        except av.FFmpegError as err:
            raise DataError(f"{path}: corrupt or truncated video ({_short(err)})") from None


def _sample_video(
    path: Path, interval: Fraction, lo: Fraction | None, hi: Fraction | None
) -> Frames:
    images: list[np.ndarray] = []
    times: list[float] = []
    # Only the kept frames are converted to RGB: conversion costs more than decoding.
    for t, frame in select_by_interval(iter_video_frames(path, lo, hi), interval, lo):
        images.append(upright_rgb(frame))
        times.append(float(t))
    return Frames(images=images, timestamps=np.asarray(times, dtype=np.float64))


def h264_or_fallback() -> str:
    """The H.264 encoder name if this PyAV build has it, else "mpeg4" (which every build has)."""
    try:
        av.codec.Codec("libx264", "w")
    except (av.FFmpegError, ValueError):
        return "mpeg4"
    return "libx264"


def natural_key(name: str) -> list[object]:
    """Sort key comparing digit runs as numbers: img_2 < img_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: Path, pattern: str | None = None) -> list[Path]:
    """The images of a frame folder in natural name order, optionally filtered by a glob."""
    names = [
        n
        for n in os.listdir(folder)
        if (fnmatch.fnmatch(n, pattern) if pattern else n.lower().endswith(IMAGE_SUFFIXES))
    ]
    return [folder / n for n in sorted(names, key=natural_key)]


def _folder_times(folder: Path, count: int, fps: float | None) -> list[Fraction]:
    stamps = folder / TIMESTAMPS_FILE
    if stamps.is_file():
        lines = [ln.strip() for ln in stamps.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if len(lines) != count:
            raise DataError(f"{stamps}: {len(lines)} timestamps for {count} images")
        try:
            times = [Fraction(x) for x in lines]
        except ValueError as err:
            raise DataError(f"{stamps}: not a number ({err})") from None
        if any(b < a for a, b in pairwise(times)):
            raise DataError(f"{stamps}: timestamps must not decrease")
        return times
    if fps is None or fps <= 0:
        raise DataError(f"{folder}: a frame folder needs 'fps' or a {TIMESTAMPS_FILE}")
    rate = Fraction(fps).limit_denominator(1_000_000)
    return [Fraction(i) / rate for i in range(count)]


def _sample_folder(
    folder: Path,
    interval: Fraction,
    lo: Fraction | None,
    hi: Fraction | None,
    fps: float | None,
    pattern: str | None,
) -> Frames:
    from PIL import Image, UnidentifiedImageError

    files = list_frame_files(folder, pattern)
    if not files:
        raise DataError(f"{folder}: no images in the frame folder (pattern {pattern!r})")
    times = _folder_times(folder, len(files), fps)
    inside = [
        i
        for i, t in enumerate(times)
        if (lo is None or t + _EPS >= lo) and (hi is None or t + _EPS < hi)
    ]
    chosen = [i for _, i in select_by_interval(((times[i], i) for i in inside), interval, lo)]
    images = []
    for i in chosen:
        try:
            with Image.open(files[i]) as img:
                images.append(np.asarray(img.convert("RGB")))
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"{files[i]}: cannot read image ({_short(err)})") from None
    return Frames(images=images, timestamps=np.asarray([float(times[i]) for i in chosen]))


def _short(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
