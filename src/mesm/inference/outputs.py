"""Prediction outputs, in one place: the rows of predicted clips and video segments, the
`Timeline` of a whole video, and the files they are written as (CSV, JSON, and a PNG with one
probability lane per emotion).

The plot has a segment band on top (every segment a grey box, so gaps without speech show; with
``--face speaker`` each box names the face track read, "L" where the largest face was kept) and
below it one lane per emotion: each segment's probability as a bar spanning the segment, solid
where the emotion is decided present (probability above its threshold), faint otherwise, with the
threshold as a dashed line. The time axis is in minutes:seconds with ticks every 1 s … 10 min,
chosen so there are at most ~20 of them, so a 10-minute video stays readable.

Every file is written atomically (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mesm.data.media.segments import SegmentationReport
from mesm.files import atomic_write_bytes

_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)
_COLOURS = ("#d62728", "#2ca02c", "#7f7f7f", "#1f77b4", "#9467bd", "#ff7f0e", "#8c564b")


def _several_faces(face: dict[str, Any]) -> bool:
    """A segment where a face had to be chosen: the speaker's was, or the largest was kept
    because no choice could be made (`mesm.data.media.speaker.CHOICE_FALLBACKS`), not one with
    one face or none."""
    return face["fallback"] not in ("one face", "no face")


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
        warnings: one line each (e.g. blank text modality, no speech found, segments that
            failed).
        failed: one per segment that could not be predicted (no row): {"segment", "start",
            "end", "reason"}; written to timeline.json (as "failed_segments") when not empty.
        face: which face was cropped ("largest" or "speaker"); with "speaker" each row has a
            "face" entry (`mesm.inference.predict.speaker_summary`: the chosen track, the
            fraction of frames where it was found, its box in a frame of the segment).
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
    failed: list[dict[str, Any]] = field(default_factory=list)
    face: str = "largest"

    @property
    def face_summary(self) -> str:
        """With ``face="speaker"``: in how many segments the speaker's face was chosen, the
        largest kept (and why) and the share of frames where the chosen face was found; "" else."""
        faces = [r["face"] for r in self.rows if "face" in r]
        if self.face != "speaker" or not faces:
            return ""
        several = [f for f in faces if _several_faces(f)]
        chosen = sum(1 for f in several if not f["fallback"])
        reasons: dict[str, int] = {}
        for f in several:
            if f["fallback"]:
                reasons[f["fallback"]] = reasons.get(f["fallback"], 0) + 1
        why = "".join(f", {n} {reason}" for reason, n in sorted(reasons.items()))
        frames = sum(r["frames"] for r in self.rows if "face" in r)
        found = sum(f["speaker_found"] * r["frames"] for r in self.rows if (f := r.get("face")))
        share = f"{100 * found / frames:.0f}%" if frames else "n/a"
        return (
            f"faces: {len(several)} of {len(faces)} segment(s) show several faces; the speaker's "
            f"face chosen in {chosen}, the largest kept in {len(several) - chosen}{why}; the "
            f"chosen face found in {share} of the frames"
        )


def clip_row(
    result: dict[str, Any],
    clip: str | os.PathLike,
    *,
    start: float | None = None,
    end: float | None = None,
) -> dict[str, Any]:
    """One `Predictor.predict` result as a row of the per-clip table (the columns of
    :func:`prediction_rows_csv`; whole clips have no segment)."""
    rest = {k: v for k, v in result.items() if k not in ("preprocessing", "transcript", "clip")}
    info = result["preprocessing"]
    return {
        "clip": str(clip),
        "segment": None,
        "start": start,
        "end": end,
        "source": "clip",
        "text": result["transcript"],
        "frames": info["frames"],
        "faces_found": info["faces_found"],
        "chunks": info["chunks"],
        **({"face": info["face"]} if "face" in info else {}),
        **rest,
    }


def segment_row(
    result: dict[str, Any], video: str | os.PathLike, index: int, segment: Any, text: str
) -> dict[str, Any]:
    """One `Predictor.predict` result of a video's segment (a `Segment`: start, end, source) as
    a row of the timeline (the columns of :func:`prediction_rows_csv`)."""
    info = result["preprocessing"]
    return {
        "clip": str(video),
        "segment": index,
        "start": segment.start,
        "end": segment.end,
        "source": segment.source,
        "text": text,
        "frames": info["frames"],
        "faces_found": info["faces_found"],
        "chunks": info["chunks"],
        **({"face": info["face"]} if "face" in info else {}),
        **{k: v for k, v in result.items() if k not in ("transcript", "preprocessing")},
    }


def prediction_rows_csv(rows: Sequence[dict[str, Any]], label_names: Sequence[str]) -> str:
    """CSV text: one line per clip or segment.

    Columns: clip, segment, start, end, source, text, frames, faces_found, chunks, then per
    emotion ``<name>_probability`` and ``<name>_present`` (1/0), then ``top`` (the most likely
    emotion, single-label checkpoints; empty otherwise), and where a row holds a ``face``
    (``--face speaker``) ``face_track``, ``face_fallback`` and ``speaker_face_found`` (the
    fraction of frames where the chosen face was found). Start/end/segment are empty for whole
    clips.
    """
    columns = ["clip", "segment", "start", "end", "source", "text"]
    columns += ["frames", "faces_found", "chunks"]
    for name in label_names:
        columns += [f"{name}_probability", f"{name}_present"]
    columns.append("top")
    faces = any("face" in row for row in rows)
    if faces:
        columns += ["face_track", "face_fallback", "speaker_face_found"]
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
        if faces and "face" in row:
            face = row["face"]
            flat["face_track"] = face["track"]
            flat["face_fallback"] = face["fallback"]
            flat["speaker_face_found"] = f"{face['speaker_found']:.3f}"
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
    if timeline.face_summary:  # absent with face="largest" (the file as it always was)
        payload["face"] = {"choice": timeline.face, "summary": timeline.face_summary}
    if timeline.failed:  # absent when every segment was predicted (the file as it always was)
        payload["failed_segments"] = timeline.failed
    return json.dumps(payload, indent=2, default=_plain) + "\n"


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _mmss(seconds: float, _pos: object = None) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def plot_timeline(timeline: Timeline, *, width: float = 14.0, dpi: int = 100) -> bytes:
    """Draw the timeline; returns the PNG bytes.

    Args:
        timeline: the result of `predict_video`.
        width: figure width in inches.
        dpi: resolution.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    names = timeline.label_names
    rows = timeline.rows
    heights = [0.5] + [1.0] * len(names)
    fig = Figure(figsize=(width, 0.9 + 0.75 * sum(heights)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    end = max(timeline.duration, max((r["end"] for r in rows), default=0.0), 1.0)
    band = axes[0]
    for i, r in enumerate(rows):
        band.broken_barh(
            [(r["start"], r["end"] - r["start"])], (0, 1), facecolors="#555" if i % 2 else "#999"
        )
        if "face" in r:  # --face speaker: which face track was read (L: the largest kept)
            face = r["face"]
            label = "L" if face["fallback"] and _several_faces(face) else str(face["track"])
            middle = (r["start"] + r["end"]) / 2
            band.text(middle, 0.5, label, ha="center", va="center", fontsize=7, color="white")
    band.set_yticks([])
    band.set_ylabel("segments", rotation=0, ha="right", va="center")
    title = f"{Path(timeline.video).name}: {len(rows)} segments ({timeline.segmentation.method}"
    band.set_title(title + f", text: {timeline.text_source})", loc="left", fontsize=10)
    for k, (ax, name) in enumerate(zip(axes[1:], names, strict=True)):
        colour = _COLOURS[k % len(_COLOURS)]
        threshold = timeline.thresholds[k]
        for r in rows:
            e = r["emotions"][name]
            ax.bar(
                r["start"],
                e["probability"],
                width=r["end"] - r["start"],
                align="edge",
                color=colour,
                alpha=0.9 if e["present"] else 0.3,
                linewidth=0,
            )
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.grid(axis="x", alpha=0.3)
    step = next((s for s in _TICK_STEPS if end / s <= 20), _TICK_STEPS[-1])
    axes[-1].xaxis.set_major_locator(MultipleLocator(step))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(_mmss))
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel(
        "time (min:s); bars: probability per segment, solid = present; dashes: threshold"
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def chosen_faces_png(timeline: Timeline, *, max_segments: int = 6, height: int = 180) -> bytes:
    """A frame of each of up to `max_segments` segments (spread over the video) with the box of
    the face read: green where the speaker's face was chosen, orange where the largest face was
    kept; under each, the segment's start and the face track. (``--face speaker`` timelines.)

    Returns:
        PNG bytes (b"" when no row has a face box).
    """
    from PIL import Image, ImageDraw

    from mesm.data.media.video import sample_frames

    rows = [r for r in timeline.rows if (r.get("face") or {}).get("box") is not None]
    if not rows:
        return b""
    picks = sorted({round(i) for i in np.linspace(0, len(rows) - 1, min(max_segments, len(rows)))})
    tiles = []
    for row in (rows[i] for i in picks):
        face = row["face"]
        t = face["box_time"]
        frame = sample_frames(timeline.video, start=t, end=t + 1e-3).images[0]
        scale = height / frame.shape[0]
        image = Image.fromarray(frame).resize((max(1, round(frame.shape[1] * scale)), height))
        tile = Image.new("RGB", (image.width, height + 16), "white")
        tile.paste(image, (0, 0))
        draw = ImageDraw.Draw(tile)
        colour = "orange" if face["fallback"] else "lime"
        draw.rectangle([v * scale for v in face["box"]], outline=colour, width=2)
        what = f"largest ({face['fallback']})" if face["fallback"] else f"face {face['track']}"
        draw.text((2, height + 2), f"{_mmss(row['start'])} {what}", fill="black")
        tiles.append(tile)
    strip = Image.new("RGB", (sum(t.width + 4 for t in tiles), height + 16), "white")
    left = 0
    for tile in tiles:
        strip.paste(tile, (left, 0))
        left += tile.width + 4
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    return buffer.getvalue()


def write_timeline(timeline: Timeline, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``timeline.csv``, ``timeline.json`` and ``timeline.png`` into `out_dir`.

    Returns:
        {"csv", "json", "png"}: the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"timeline.{kind}" for kind in ("csv", "json", "png")}
    csv_text = prediction_rows_csv(timeline.rows, timeline.label_names)
    atomic_write_bytes(paths["csv"], csv_text.encode("utf-8"))
    atomic_write_bytes(paths["json"], timeline_json(timeline).encode("utf-8"))
    atomic_write_bytes(paths["png"], plot_timeline(timeline))
    return paths


def write_rows_csv(
    path: str | os.PathLike, rows: Sequence[dict[str, Any]], label_names: Sequence[str]
) -> None:
    """The rows of :func:`prediction_rows_csv` written to `path` (atomically)."""
    atomic_write_bytes(path, prediction_rows_csv(rows, label_names).encode("utf-8"))
