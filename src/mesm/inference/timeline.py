"""Whole videos in, an emotion timeline out.

`predict_video` cuts a long video into utterances — the cues of a subtitle file, or the speech
segments found by voice activity detection — and runs a checkpoint on each, exactly as on a
clip of that span (same frame sampling, face crops, mel chunks and tokenizer). The video and its
audio are decoded in one streaming pass (`mesm.data.media.stream`), so memory stays flat with the
video's length. Text comes from the subtitles, from a speech-recognition model
(``transcribe=``), or is empty (with a warning: the text modality is then blank).

`prediction_rows_csv` / `timeline_json` turn the result into the files `mesm predict --out`
writes (the plot is `mesm.analysis.timeline.plot_timeline`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from mesm.data.media.audio import resample
from mesm.data.media.segments import (
    Segment,
    SegmentationReport,
    VadSettings,
    read_subtitles,
    speech_segments,
)
from mesm.data.media.stream import iter_segment_media
from mesm.data.media.transcribe import ASR_RATE, Transcriber
from mesm.data.media.vad import speech_probabilities
from mesm.data.media.video import video_duration
from mesm.errors import MissingInputError, UsageError
from mesm.inference.predict import Predictor

BLANK_TEXT_WARNING = (
    "no subtitles and no --transcribe model: the transcripts are empty, so the text modality "
    "is blank"
)


@dataclass
class Timeline:
    """The emotions of a whole video, segment by segment.

    Attributes:
        video: the video file.
        checkpoint: the checkpoint used.
        duration: the video's duration in seconds.
        label_names: the K emotions.
        thresholds: (K,) the validation-tuned decision thresholds.
        task: "single_label" or "multi_label".
        text_source: "subtitles", "asr:<model>" or "none".
        segmentation: what segmentation found and changed.
        rows: one per segment: {"clip", "segment", "start", "end", "source", "text",
            "frames", "faces_found", "chunks", "emotions": {name: {"probability",
            "threshold", "present"}}, "present", "top" (single-label)}.
        warnings: one line each (e.g. blank text modality, no speech found).
    """

    video: str
    checkpoint: str
    duration: float
    label_names: list[str]
    thresholds: list[float]
    task: str
    text_source: str
    segmentation: SegmentationReport
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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

    Returns:
        The timeline (one row per segment, in time order).

    Raises:
        DataError / UsageError: unreadable media or subtitles, bad arguments (naming them).
    """
    if subtitles is not None and transcribe is not None:
        raise UsageError("give --subtitles or --transcribe, not both (subtitles carry the text)")
    video = Path(video)
    if not video.is_file():
        raise MissingInputError(f"no video file at {video}")
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device)
    interval = predictor.settings.img_interval_ms / 1000
    duration = video_duration(video)
    segments, report = find_segments(
        video,
        subtitles=subtitles,
        audio=audio,
        min_duration=interval,
        overlapping_cues=overlapping_cues,
        vad=vad,
        duration=duration,
    )
    asr = Transcriber(transcribe, device) if isinstance(transcribe, str) else transcribe
    text_source = "subtitles" if subtitles is not None else "none"
    timeline = Timeline(
        video=str(video),
        checkpoint=predictor.checkpoint,
        duration=duration,
        label_names=predictor.label_names,
        thresholds=[float(t) for t in predictor.thresholds],
        task=predictor.task,
        text_source=f"asr:{asr.model}" if asr is not None else text_source,
        segmentation=report,
    )
    if subtitles is None and asr is None:
        timeline.warnings.append(BLANK_TEXT_WARNING)
    if not segments:
        timeline.warnings.append(f"{video}: no speech found; the timeline is empty")
    bar = tqdm(total=len(segments), desc="segments", unit="seg", disable=not progress)
    media = iter_segment_media(
        video, segments, interval_ms=predictor.settings.img_interval_ms, audio=audio
    )
    for index, item in enumerate(media):
        text = item.segment.text
        if asr is not None:
            wave = resample(torch.from_numpy(item.waveform), item.sample_rate, ASR_RATE)
            text = asr(wave.numpy())
        result = predictor.predict(predictor.media_features(item), text)
        info = result.pop("preprocessing")
        timeline.rows.append(
            {
                "clip": str(video),
                "segment": index,
                "start": item.segment.start,
                "end": item.segment.end,
                "source": item.segment.source,
                "text": text,
                "frames": info["frames"],
                "faces_found": info["faces_found"],
                "chunks": info["chunks"],
                **{k: v for k, v in result.items() if k != "transcript"},
            }
        )
        bar.update()
    bar.close()
    return timeline


def prediction_rows_csv(rows: Sequence[dict[str, Any]], label_names: Sequence[str]) -> str:
    """CSV text: one line per clip or segment.

    Columns: clip, segment, start, end, source, text, frames, faces_found, chunks, then per
    emotion ``<name>_probability`` and ``<name>_present`` (1/0), then ``top`` (the most likely
    emotion, single-label checkpoints; empty otherwise). Start/end/segment are empty for whole
    clips.
    """
    columns = ["clip", "segment", "start", "end", "source", "text"]
    columns += ["frames", "faces_found", "chunks"]
    for name in label_names:
        columns += [f"{name}_probability", f"{name}_present"]
    columns.append("top")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {k: row.get(k, "") for k in columns[:9]}
        for k in ("start", "end"):
            if isinstance(flat[k], float):
                flat[k] = f"{flat[k]:.3f}"
        for name in label_names:
            emotion = row["emotions"][name]
            flat[f"{name}_probability"] = f"{emotion['probability']:.6f}"
            flat[f"{name}_present"] = int(emotion["present"])
        flat["top"] = row.get("top", "")
        writer.writerow({k: "" if v is None else v for k, v in flat.items()})
    return out.getvalue()


def timeline_json(timeline: Timeline) -> str:
    """The timeline as JSON text (video, checkpoint, emotions, segmentation report, rows)."""
    payload = {
        "video": timeline.video,
        "checkpoint": timeline.checkpoint,
        "duration": timeline.duration,
        "label_names": timeline.label_names,
        "thresholds": timeline.thresholds,
        "task": timeline.task,
        "text_source": timeline.text_source,
        "segmentation": {
            **asdict(timeline.segmentation),
            "summary": timeline.segmentation.summary(),
        },
        "warnings": timeline.warnings,
        "segments": timeline.rows,
    }
    return json.dumps(payload, indent=2, default=_plain) + "\n"


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
