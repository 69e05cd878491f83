"""The media of many segments of one long video, decoded in a single streaming pass.

`iter_segment_media` walks the video stream and the audio track once, front to back, and yields
each segment's sampled frames and waveform as soon as the segment is complete. Only what the
current segment needs is held: the frames the sampling rule keeps (converted to RGB only then)
and the audio samples inside the segment (plus the one decoded audio frame that straddles the
boundary), so memory is bounded by the longest segment, not by the video's length.

The frames and samples of a segment are exactly those `sample_frames` and `load_video_audio` /
`load_audio` return for the same span (tested), so a segment's features equal those of a
manifest record with that ``start`` / ``end``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np

from mesm.data.errors import DataError
from mesm.data.media.audio import SEPARATE_AUDIO, check_waveform
from mesm.data.media.segments import Segment
from mesm.data.media.video import (
    _EPS,
    Frames,
    iter_video_frames,
    select_by_interval,
    upright_rgb,
)


@dataclass
class SegmentMedia:
    """What one segment holds.

    Attributes:
        segment: the segment.
        frames: its sampled frames (T may be 0 where the video stream has ended).
        waveform: (N,) float32 mono samples at `sample_rate`.
        sample_rate: of `waveform` (the source's own rate; resample before the mel).
        missing: why the segment cannot be predicted (its audio is missing: the track ended
            before it), None when it can; the segments after it still come.
    """

    segment: Segment
    frames: Frames
    waveform: np.ndarray
    sample_rate: int
    missing: str | None = None


class _Frames:
    """A video's decoded frames with one frame of look-ahead."""

    def __init__(self, path: Path) -> None:
        self._it = iter_video_frames(path)
        self._next = next(self._it, None)

    def take(self, start: Fraction, end: Fraction, interval: Fraction) -> Frames:
        def inside() -> Iterator[tuple[Fraction, av.VideoFrame]]:
            while self._next is not None and self._next[0] + _EPS < end:
                t, frame = self._next
                self._next = next(self._it, None)
                if t + _EPS >= start:
                    yield t, frame

        images, times = [], []
        # Only the kept frames are converted to RGB (the costly part); the rest are dropped.
        for t, frame in select_by_interval(inside(), interval, start):
            images.append(upright_rgb(frame))
            times.append(float(t))
        return Frames(images=images, timestamps=np.asarray(times, dtype=np.float64))


class _Audio:
    """A media file's first audio track as float samples at its own rate, read forward only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._container = av.open(str(path))
        except (av.FFmpegError, OSError) as err:
            raise DataError(f"{path}: cannot open media ({err})") from None
        if not self._container.streams.audio:
            self._container.close()
            raise DataError(f"{path}: has no audio track {SEPARATE_AUDIO}")
        stream = self._container.streams.audio[0]
        self.rate = stream.rate or stream.codec_context.sample_rate
        self.end: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            # Encoders pad the last frame; the stream's duration does not (as load_video_audio).
            self.end = float((stream.duration + (stream.start_time or 0)) * stream.time_base)
        self._pieces = self._decode(stream)
        self._buffer: deque[tuple[int, np.ndarray]] = deque()  # (first sample, (C, n))
        self._next_sample = 0
        self._done = False

    def _decode(self, stream: av.AudioStream) -> Iterator[tuple[int, np.ndarray]]:
        to_float = av.AudioResampler(format="fltp")
        next_sample: int | None = None
        try:
            for frame in self._container.decode(stream):
                for out in to_float.resample(frame):
                    data = out.to_ndarray()
                    if out.pts is not None and out.time_base is not None:
                        first = round(Fraction(out.pts) * out.time_base * self.rate)
                    else:
                        first = next_sample or 0
                    next_sample = first + data.shape[1]
                    yield first, data
        except av.FFmpegError as err:
            raise DataError(f"{self.path}: corrupt or truncated audio track ({err})") from None

    def take(self, start: float, end: float) -> np.ndarray:
        if self.end is not None:
            end = min(end, self.end)
        lo, hi = round(start * self.rate), round(end * self.rate)
        while not self._done and self._next_sample < hi:
            piece = next(self._pieces, None)
            if piece is None:
                self._done = True
                break
            self._buffer.append(piece)
            self._next_sample = piece[0] + piece[1].shape[1]
        parts = []
        for first, data in self._buffer:
            a, b = max(0, lo - first), max(0, min(data.shape[1], hi - first))
            if b > a:
                parts.append(data[:, a:b])
        # Later segments start at or after `end`: pieces ending before it are done with.
        while self._buffer and self._buffer[0][0] + self._buffer[0][1].shape[1] <= hi:
            self._buffer.popleft()
        if not parts:
            return np.zeros(0, np.float32)
        return np.concatenate(parts, axis=1).mean(axis=0).astype(np.float32)

    def close(self) -> None:
        self._container.close()


def iter_segment_media(
    video: str | os.PathLike,
    segments: Sequence[Segment],
    *,
    interval_ms: float = 500,
    audio: str | os.PathLike | None = None,
) -> Iterator[SegmentMedia]:
    """Each segment's sampled frames and audio, decoding the file(s) once, front to back.

    Args:
        video: a video file.
        segments: in time order, not overlapping.
        interval_ms: one frame every this many milliseconds (origin: each segment's start).
        audio: a separate audio file (default: the video's own track).

    Yields:
        One `SegmentMedia` per segment, in order; a segment without audio samples (the track
        ends before it) comes with `SegmentMedia.missing` saying so, and the others go on.

    Raises:
        DataError: unreadable media, no audio track, or non-finite samples (naming them).
    """
    video = Path(video)
    if video.is_dir():
        raise DataError(f"{video}: whole-video prediction needs a video file, not a frame folder")
    for a, b in pairwise(segments):
        if b.start < a.end - 1e-6:
            raise ValueError(f"segments overlap or are out of order: {a} and {b}")
    interval = Fraction(str(interval_ms)) / 1000
    frames = _Frames(video)
    track = _Audio(Path(audio) if audio is not None else video)
    try:
        for segment in segments:
            images = frames.take(Fraction(str(segment.start)), Fraction(str(segment.end)), interval)
            wave = track.take(segment.start, segment.end)
            # The file the samples came from is the one named (a separate --audio, or the video).
            label = f"{track.path}: segment {segment.start:.2f}-{segment.end:.2f} s"
            if wave.size == 0:
                ends = f" at {track.end:.2f} s" if track.end is not None else ""
                missing = f"no audio samples (the audio track ends{ends}, before the segment)"
                yield SegmentMedia(segment, images, wave, track.rate, missing=missing)
                continue
            check_waveform(wave, label)
            yield SegmentMedia(segment, images, wave, track.rate)
    finally:
        track.close()
