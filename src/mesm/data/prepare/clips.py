"""Cutting utterance clips out of long recordings (shared by the dataset-specific preparers).

A source video is decoded once, in order; every frame inside a clip's span is (optionally
cropped to its left/right half and) encoded into that clip, so overlapping spans and hundreds of
clips per recording cost one decode. Clip timestamps are relative to the span start, so the
clip's video and its WAV (cut from the same start) stay aligned. Each output is written under a
temporary name and renamed when complete: an interrupted run never leaves a valid-looking clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf

from mesm.data.errors import DataError
from mesm.data.media.audio import load_video_audio
from mesm.data.media.video import (
    first_video_stream,
    h264_or_fallback,
    iter_video_frames,
    upright_rgb,
)
from mesm.files import atomic_target, publish, temporary_name

Half = Literal["left", "right"]


@dataclass
class ClipSpec:
    """One clip to cut.

    Attributes:
        start: span start in seconds on the source clock.
        end: span end in seconds (exclusive).
        video_out: where the clip's video goes (.mp4: H.264).
        audio_out: where the clip's 16-bit WAV goes.
        half: keep only this half of the frame (two-person recordings), or None.
        channel: keep this audio channel of a multi-channel source, or None to mix to mono.
    """

    start: float
    end: float
    video_out: Path
    audio_out: Path
    half: Half | None = None
    channel: int | None = None


def cut_video_clips(source: Path, clips: list[ClipSpec], *, crf: int = 18) -> list[ClipSpec]:
    """Write the video part of `clips` from one pass over `source`.

    Returns:
        The clips whose span holds no frame (nothing is written for them).

    Raises:
        DataError: the source cannot be decoded.
    """
    clips = sorted(clips, key=lambda c: c.start)
    if not clips:
        return []
    writers: dict[int, _ClipWriter] = {}
    finished: set[int] = set()
    lo = Fraction(str(max(0.0, clips[0].start)))
    rate = _frame_rate(source)
    next_open = 0
    try:
        for t, frame in iter_video_frames(source, start=lo):
            # Finish clips whose span ended before this frame.
            for i in [i for i in writers if t >= Fraction(str(clips[i].end))]:
                writers.pop(i).close()
                finished.add(i)
            while next_open < len(clips) and Fraction(str(clips[next_open].start)) <= t:
                if t < Fraction(str(clips[next_open].end)):
                    writers[next_open] = _ClipWriter(clips[next_open], rate, crf)
                else:
                    finished.add(next_open)  # span shorter than a frame interval: no frame
                next_open += 1
            if writers:
                image = upright_rgb(frame)
                for i, writer in writers.items():
                    writer.write(image, t - Fraction(str(clips[i].start)))
            elif next_open >= len(clips):
                break
        for i in list(writers):
            writers.pop(i).close()
            finished.add(i)
    finally:
        for writer in writers.values():
            writer.abort()
    empty = [c for i, c in enumerate(clips) if i in finished and not c.video_out.exists()]
    return empty + clips[next_open:]


def cut_audio_clips(source: Path, clips: list[ClipSpec], *, from_video: bool = False) -> None:
    """Write the WAV part of `clips` from an audio file (or the video's own track).

    Raises:
        DataError: unreadable source, or no samples in a clip's span.
    """
    for clip in clips:
        if from_video:
            data, sr = load_video_audio(source, start=max(0.0, clip.start), end=clip.end)
            data = data[:, None]
        else:
            try:
                info = sf.info(str(source))
                first = round(max(0.0, clip.start) * info.samplerate)
                last = min(round(clip.end * info.samplerate), info.frames)
                data, sr = sf.read(
                    str(source), start=first, stop=max(first, last), dtype="float32", always_2d=True
                )
            except (sf.LibsndfileError, RuntimeError, OSError) as err:
                raise DataError(f"{source}: cannot read audio ({err})") from None
        if data.shape[0] == 0:
            raise DataError(f"{source}: no audio samples in [{clip.start}, {clip.end}) s")
        if clip.channel is not None and data.shape[1] > clip.channel:
            mono = data[:, clip.channel]
        else:
            mono = data.mean(axis=1)
        with atomic_target(clip.audio_out) as tmp:
            sf.write(str(tmp), mono, sr, subtype="PCM_16", format="WAV")


def _frame_rate(source: Path) -> Fraction:
    try:
        container = av.open(str(source))
    except (av.FFmpegError, OSError) as err:
        raise DataError(f"{source}: cannot open video ({err})") from None
    with container:
        stream = first_video_stream(container, source)
        rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate) if rate else Fraction(30)


class _ClipWriter:
    """Encodes one clip to a temporary file; `close` renames it into place."""

    def __init__(self, clip: ClipSpec, rate: Fraction, crf: int) -> None:
        clip.video_out.parent.mkdir(parents=True, exist_ok=True)
        self.clip = clip
        self.tmp = temporary_name(clip.video_out)
        self.rate = rate
        self.crf = crf
        self.container: av.container.OutputContainer | None = None
        self.stream = None
        self.last_pts = -1

    def write(self, image: np.ndarray, offset: Fraction) -> None:
        if self.clip.half is not None:
            mid = image.shape[1] // 2
            image = image[:, :mid] if self.clip.half == "left" else image[:, mid:]
        # yuv420p needs even sizes: drop a last odd row/column.
        image = np.ascontiguousarray(image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2])
        if self.container is None:
            self.container = av.open(str(self.tmp), mode="w", format="mp4")
            codec = h264_or_fallback()
            self.stream = self.container.add_stream(codec, rate=self.rate)
            self.stream.width, self.stream.height = image.shape[1], image.shape[0]
            self.stream.pix_fmt = "yuv420p"
            self.stream.codec_context.time_base = Fraction(1, 90000)
            if codec == "libx264":
                self.stream.options = {"crf": str(self.crf), "preset": "veryfast"}
            else:
                self.stream.bit_rate = 8_000_000
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        pts = max(self.last_pts + 1, round(offset * 90000))
        frame.pts, frame.time_base = pts, Fraction(1, 90000)
        self.last_pts = pts
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        if self.container is None:
            return
        self.container.mux(self.stream.encode())
        self.container.close()
        publish(self.tmp, self.clip.video_out)

    def abort(self) -> None:
        if self.container is not None:
            self.container.close()
        self.tmp.unlink(missing_ok=True)
