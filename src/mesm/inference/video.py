"""Whole videos in, an emotion timeline out.

`predict_video` cuts a long video into utterances — the cues of a subtitle file, or the speech
segments found by voice activity detection — and runs a checkpoint on each, exactly as on a
clip of that span (same frame sampling, face crops, mel chunks and tokenizer). The video and its
audio are decoded in one streaming pass (`mesm.data.media.stream`), so memory stays flat with the
video's length. Text comes from the subtitles, from a speech-recognition model
(``transcribe=``), or is empty (with a warning: the text modality is then blank).

`predict_videos` does it for several videos and writes each one's timeline files
(:func:`mesm.inference.outputs.write_timeline`), reporting a video that fails and going on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from mesm.data.media.audio import resample
from mesm.data.media.cache import FaceChoice
from mesm.data.media.segments import (
    Segment,
    SegmentationReport,
    VadSettings,
    read_subtitles,
    speech_segments,
)
from mesm.data.media.stream import SegmentMedia, iter_segment_media
from mesm.data.media.transcribe import ASR_RATE, Transcriber
from mesm.data.media.vad import speech_probabilities
from mesm.data.media.video import video_duration
from mesm.errors import MissingInputError, OptionError
from mesm.inference.batch import CLIP_ERRORS, ClipInput, failure_line
from mesm.inference.outputs import Timeline, segment_row, write_timeline
from mesm.inference.predict import Predictor

# Written into timeline.json as it always was (the flag name is part of that file's content).
BLANK_TEXT_WARNING = (
    "no subtitles and no --transcribe model: the transcripts are empty, so the text modality "
    "is blank"
)


def find_segments(
    video: str | os.PathLike,
    *,
    subtitles: str | os.PathLike | None = None,
    audio: str | os.PathLike | None = None,
    min_duration: float = 0.5,
    overlapping_cues: Literal["error", "merge"] = "error",
    vad: VadSettings | None = None,
    duration: float | None = None,
) -> tuple[list[Segment], SegmentationReport]:
    """The utterances of a video: its subtitle cues, or its speech segments.

    Args:
        video: the video file.
        subtitles: a subtitle file (None: voice-activity detection on the audio).
        audio: a separate audio file for VAD (default: the video's own track).
        min_duration: shorter cues are merged or skipped (the frame interval).
        overlapping_cues: "error" or "merge".
        vad: VAD segmentation settings.
        duration: the video's duration (None: read from the file).
    """
    duration = video_duration(video) if duration is None else duration
    if subtitles is not None:
        return read_subtitles(
            subtitles, duration=duration, min_duration=min_duration, overlaps=overlapping_cues
        )
    probs, offset, step = speech_probabilities(audio if audio is not None else video)
    return speech_segments(probs, step, offset=offset, duration=duration, settings=vad)


def check_video_options(subtitles: object, transcribe: object, videos: int = 1) -> None:
    """What whole-video prediction refuses before any work.

    Raises:
        OptionError: both `subtitles` and `transcribe`, or subtitles for several videos.
    """
    if subtitles is not None and transcribe is not None:
        raise OptionError(
            "give {0} or {1}, not both (subtitles carry the text)", "subtitles", "transcribe"
        )
    if subtitles is not None and videos != 1:
        raise OptionError("{0} belongs to one video, got {count} inputs", "subtitles", count=videos)


def predict_video(
    checkpoint: str | os.PathLike | Predictor,
    video: str | os.PathLike,
    *,
    subtitles: str | os.PathLike | None = None,
    transcribe: str | Transcriber | None = None,
    audio: str | os.PathLike | None = None,
    overlapping_cues: Literal["error", "merge"] = "error",
    vad: VadSettings | None = None,
    device: str = "cpu",
    progress: bool = True,
    duration: float | None = None,
    face: FaceChoice | None = "speaker",
) -> Timeline:
    """Segment a whole video and predict each segment's emotions.

    Args:
        checkpoint: a checkpoint file, or a `Predictor` already holding one.
        video: the video file (any container ffmpeg reads).
        subtitles: SRT/WebVTT/ASS file whose cues are the utterances (and their text).
        transcribe: a speech-recognition model (name/folder, or a `Transcriber`) for the text
            of VAD segments; not used with subtitles.
        audio: a separate audio file (default: the video's own track).
        overlapping_cues: "error" or "merge" (see `mesm.data.media.segments`).
        vad: VAD segmentation settings (default: `VadSettings()`).
        device: where the model (and the speech recogniser) run.
        progress: show a progress bar over segments.
        duration: the video's duration in seconds, when the caller has read it (None: read).
        face: which face of a frame is cropped: "speaker" (the face whose mouth moves with
            the segment's speech; `mesm.data.media.speaker`) or "largest"; None: the
            predictor's (the checkpoint's) rule.

    Returns:
        The timeline (one row per segment, in time order).

    Raises:
        DataError / UsageError: unreadable media or subtitles, bad arguments (naming them).
    """
    check_video_options(subtitles, transcribe)
    video = Path(video)
    if not video.is_file():
        raise MissingInputError(f"no video file at {video}")
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device)
    predictor = predictor.with_face(face)
    duration = video_duration(video) if duration is None else duration
    segments, report = find_segments(
        video,
        subtitles=subtitles,
        audio=audio,
        min_duration=predictor.settings.img_interval_ms / 1000,
        overlapping_cues=overlapping_cues,
        vad=vad,
        duration=duration,
    )
    asr = Transcriber(transcribe, device) if isinstance(transcribe, str) else transcribe
    timeline = Timeline(
        video=str(video),
        checkpoint=predictor.checkpoint,
        duration=duration,
        label_names=predictor.label_names,
        thresholds=[float(t) for t in predictor.thresholds],
        task=predictor.task,
        text_source=_text_source(subtitles, asr),
        segmentation=report,
        face=predictor.settings.face,
    )
    if subtitles is None and asr is None:
        timeline.warnings.append(BLANK_TEXT_WARNING)
    if not segments:
        timeline.warnings.append(f"{video}: no speech found; the timeline is empty")
    _predict_segments(predictor, timeline, segments, asr, audio, progress)
    return timeline


def _text_source(subtitles: object, asr: Transcriber | None) -> str:
    if asr is not None:
        return f"asr:{asr.model}"
    return "subtitles" if subtitles is not None else "none"


def _predict_segments(
    predictor: Predictor,
    timeline: Timeline,
    segments: list[Segment],
    asr: Transcriber | None,
    audio: str | os.PathLike | None,
    progress: bool,
) -> None:
    """Appends one row per segment to `timeline` (decoded in one streaming pass); a segment
    whose media is missing (the audio track ends before it) is counted in `timeline.failed`
    and a warning, and the others go on."""
    video = Path(timeline.video)
    bar = tqdm(total=len(segments), desc="segments", unit="seg", disable=not progress)
    media = iter_segment_media(
        video, segments, interval_ms=predictor.settings.img_interval_ms, audio=audio
    )
    try:
        _predict_media(predictor, timeline, media, asr, bar)
    except KeyboardInterrupt:
        done = len(timeline.rows) + len(timeline.failed)
        raise KeyboardInterrupt(
            f"{video}: interrupted after {done} of {len(segments)} segment(s) (this video's "
            "timeline is not written)"
        ) from None
    finally:
        bar.close()
    if timeline.failed:
        first = timeline.failed[0]
        timeline.warnings.append(
            f"{len(timeline.failed)} of {len(segments)} segment(s) failed, from "
            f"{first['start']:.2f} s on: {first['reason']}; the timeline holds the others"
        )


def _predict_media(
    predictor: Predictor,
    timeline: Timeline,
    media: Iterator[SegmentMedia],
    asr: Transcriber | None,
    bar: tqdm,
) -> None:
    video = Path(timeline.video)
    for index, item in enumerate(media):
        segment = item.segment
        if item.missing is not None:
            failed = {"start": segment.start, "end": segment.end, "reason": item.missing}
            timeline.failed.append({"segment": index, **failed})
            bar.update()
            continue
        text = segment.text
        if asr is not None:
            wave = resample(torch.from_numpy(item.waveform), item.sample_rate, ASR_RATE)
            text = asr(wave.numpy())
        result = predictor.predict(predictor.media_features(item), text)
        timeline.rows.append(segment_row(result, video, index, segment, text))
        bar.update()


@dataclass
class VideoOutcome:
    """One video of `predict_videos`: its timeline and files, or why it failed.

    Attributes:
        clip: the video file.
        timeline: its timeline (None when it failed).
        files: {"csv", "json", "png"}: the files written (empty when it failed).
        failure: the reason it failed, one line (None when it worked).
    """

    clip: Path
    timeline: Timeline | None = None
    files: dict[str, Path] | None = None
    failure: str | None = None


def predict_videos(
    predictor: Predictor,
    videos: Sequence[ClipInput],
    out_dir: str | os.PathLike,
    *,
    subtitles: str | os.PathLike | None = None,
    transcribe: str | None = None,
    audio: str | os.PathLike | None = None,
    overlapping_cues: Literal["error", "merge"] = "error",
    vad: VadSettings | None = None,
    progress: bool = True,
    face: FaceChoice | None = "speaker",
) -> Iterator[VideoOutcome]:
    """The timeline of each video, written as files under `out_dir` (one sub-folder per video,
    named by its file name, when there are several); a video that fails is reported, not fatal.

    The options are checked (:func:`check_video_options`) before anything runs; the outcomes
    come one by one, as each video is done.

    Args:
        predictor: the loaded checkpoint.
        videos: from :func:`mesm.inference.batch.expand_inputs`.
        out_dir: where the timeline files go.
        subtitles: one video's subtitle file (its cues are the utterances).
        transcribe: a speech-recognition model for the text of VAD segments.
        audio: a separate audio file for videos whose input names none.
        overlapping_cues: as for :func:`predict_video`.
        vad: as for :func:`predict_video`.
        progress: as for :func:`predict_video`.
        face: as for :func:`predict_video`.
    """
    check_video_options(subtitles, transcribe, len(videos))
    asr = Transcriber(transcribe, predictor.device) if transcribe else None
    folders = _video_folders(Path(out_dir), videos)
    options = {"subtitles": subtitles, "transcribe": asr, "overlapping_cues": overlapping_cues}
    options["face"] = face  # each predict_video applies it (its own default is "speaker")
    return _iter_videos(predictor, videos, folders, audio, vad, progress, options)


def _video_folders(out: Path, videos: Sequence[ClipInput]) -> list[Path]:
    """`out` for one video; `out/<file stem>` for each of several (made unique with "_")."""
    if len(videos) == 1:
        return [out]
    folders, used = [], set()
    for item in videos:
        name = item.clip.stem
        while name in used:
            name += "_"
        used.add(name)
        folders.append(out / name)
    return folders


def _iter_videos(
    predictor: Predictor,
    videos: Sequence[ClipInput],
    folders: list[Path],
    audio: str | os.PathLike | None,
    vad: VadSettings | None,
    progress: bool,
    options: dict[str, Any],
) -> Iterator[VideoOutcome]:
    """Each video's `VideoOutcome`, as it is done (a failing video becomes its failure line)."""
    for item, folder in zip(videos, folders, strict=True):
        try:
            timeline = predict_video(
                predictor,
                item.clip,
                audio=item.audio or audio,
                vad=vad,
                progress=progress,
                **options,
            )
        except CLIP_ERRORS as err:
            yield VideoOutcome(item.clip, failure=failure_line(err))
            continue
        yield VideoOutcome(item.clip, timeline, write_timeline(timeline, folder))
