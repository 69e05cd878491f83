"""CMU-MOSEI (Zadeh et al. 2018) from its raw release into a mesm dataset folder.

Accepted layout (the raw release, as the CMU-MultimodalSDK distributes it)::

    release_dir/
      Videos/Full/Combined/<video id>.mp4
      Audio/Full/WAV_16000/<video id>.wav       optional (also Audio/WAV_16000/); without it the
                                                video's own audio track is used
      Transcript/Segmented/Combined/<video id>.txt   (also Transcript/Combined/)
          lines "<video id>___<segment index>___<start s>___<end s>___<text>"
      Labels/*.csv                              Mechanical Turk annotation batches, one row per
                                                annotator and segment, with the columns
          Input.VIDEO_ID  (the video id, possibly as a path or URL ending in it)
          Input.CLIP      (the segment index)
          Answer.anger, Answer.disgust, Answer.fear, Answer.happiness, Answer.sadness,
          Answer.surprise (each annotator's intensity, 0..3)

What `prepare_mosei` writes::

    out_dir/dataset.json, manifest.jsonl
    out_dir/clips/<video id>/<video id>_<segment index>.mp4 / .wav   the segment, cut

* Utterance ids are ``<video id>_<segment index>`` (the paper's split lists use them).
* Labels: 6 multi-labels (anger, disgust, fear, happiness, sadness, surprise); an emotion is
  present when the annotators' intensities for the segment sum to more than 0. Segments with no
  emotion present are kept (all-zero label vector), as in the paper.
* Segments without annotation rows are dropped and counted ("no labels"), as are those without a
  transcript line ("no transcript"), with an empty text, or in no split list (unless
  `keep_unlisted`). Listed ids missing from the release are counted in the report.
* A segment starting before 0 s is cut from 0 s.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

from mesm.data.errors import DataError
from mesm.data.manifest import Record
from mesm.data.prepare.clips import ClipSpec, cut_audio_clips, cut_video_clips
from mesm.data.prepare.common import (
    PrepareReport,
    count_absent,
    cut_and_write,
    paper_split_lists,
    read_release_text,
    release_info,
    split_of,
)

MOSEI_LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
_VIDEO_DIRS = ("Videos/Full/Combined",)
_AUDIO_DIRS = ("Audio/Full/WAV_16000", "Audio/WAV_16000")
_TEXT_DIRS = ("Transcript/Segmented/Combined", "Transcript/Combined")


def read_label_sums(label_dir: Path) -> dict[str, list[float]]:
    """Sum annotator intensities per segment over every CSV in `label_dir`.

    Returns:
        utterance id -> 6 sums in `MOSEI_LABELS` order.

    Raises:
        DataError: a CSV lacks a required column or holds a non-numeric intensity.
    """
    columns = [f"Answer.{name}" for name in MOSEI_LABELS]
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(MOSEI_LABELS))
    for path in sorted(label_dir.glob("*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [
                c
                for c in ("Input.VIDEO_ID", "Input.CLIP", *columns)
                if c not in (reader.fieldnames or [])
            ]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}")
            for line, row in enumerate(reader, start=2):
                video = row["Input.VIDEO_ID"].strip().rstrip("/").split("/")[-1]
                video = video[:-4] if video.endswith(".mp4") else video
                uid = f"{video}_{row['Input.CLIP'].strip()}"
                try:
                    values = [float(row[c] or 0) for c in columns]
                except ValueError as err:
                    raise DataError(f"{path}:{line}: non-numeric intensity ({err})") from None
                sums[uid] = [a + b for a, b in zip(sums[uid], values, strict=True)]
    return dict(sums)


def parse_segments(path: Path) -> list[tuple[str, float, float, str]]:
    """Segmented transcript -> (utterance id, start s, end s, text) per line."""
    out = []
    for line in read_release_text(path).splitlines():
        parts = line.split("___", 4)
        if len(parts) < 5:
            continue
        video, index, start, end, text = parts
        try:
            out.append((f"{video}_{index}", float(start), float(end), text.strip()))
        except ValueError:
            continue
    return out


def _select(
    transcript: Path,
    sums: dict[str, list[float]],
    lists: dict[str, set[str]],
    out: Path,
    report: PrepareReport,
    seen: set[str],
    keep_unlisted: bool,
    overwrite: bool,
) -> tuple[list[Record], list[ClipSpec]]:
    """The records of one video's transcript that are kept, and the clips still to cut;
    dropped segments are counted in `report`, every segment id added to `seen`."""
    video_id = transcript.stem
    kept, clips = [], []
    for uid, start, end, text in parse_segments(transcript):
        seen.add(uid)
        split = split_of(uid, lists)
        reason = _drop_reason(uid, text, split, sums, keep_unlisted)
        if reason:
            report.drop(reason)
            continue
        video, audio = f"clips/{video_id}/{uid}.mp4", f"clips/{video_id}/{uid}.wav"
        labels = tuple(n for n, s in zip(MOSEI_LABELS, sums[uid], strict=True) if s > 0)
        kept.append(Record(id=uid, video=video, audio=audio, text=text, labels=labels, split=split))
        if overwrite or not ((out / video).is_file() and (out / audio).is_file()):
            clips.append(ClipSpec(max(0.0, start), end, out / video, out / audio))
    return kept, clips


def _first_dir(release: Path, candidates: tuple[str, ...]) -> Path | None:
    for rel in candidates:
        if (release / rel).is_dir():
            return release / rel
    return None


def prepare_mosei(
    release_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    keep_unlisted: bool = False,
    num_workers: int = 0,
    overwrite: bool = False,
    crf: int = 18,
    progress: bool = True,
) -> PrepareReport:
    """Build a mesm dataset folder from the raw CMU-MOSEI release (see the module docstring).

    Args:
        release_dir: the release folder (Videos/, Audio/, Transcript/, Labels/).
        out_dir: the dataset folder to write.
        keep_unlisted: keep segments in none of the paper's split lists (split null).
        num_workers: processes cutting videos in parallel (0: this process).
        overwrite: cut clips again even if they exist.
        crf: H.264 quality of the clips.
        progress: show a progress bar.

    Returns:
        The report (also stored under "prepare" in dataset.json).

    Raises:
        DataError: a required folder is missing, or a label CSV is malformed.
    """
    release, out = Path(release_dir), Path(out_dir)
    video_dir = _first_dir(release, _VIDEO_DIRS)
    text_dir = _first_dir(release, _TEXT_DIRS)
    audio_dir = _first_dir(release, _AUDIO_DIRS)
    if video_dir is None or text_dir is None or not (release / "Labels").is_dir():
        raise DataError(
            f"{release}: expected {_VIDEO_DIRS[0]}/, {_TEXT_DIRS[0]}/ (or {_TEXT_DIRS[1]}/) and "
            "Labels/ (see mesm.data.prepare.mosei)"
        )
    sums = read_label_sums(release / "Labels")
    lists = paper_split_lists("mosei")
    report = PrepareReport()
    records: dict[str, list[Record]] = {}
    jobs: dict[str, tuple] = {}
    seen: set[str] = set()
    for transcript in sorted(text_dir.glob("*.txt")):
        video_id = transcript.stem
        kept, clips = _select(transcript, sums, lists, out, report, seen, keep_unlisted, overwrite)
        if not kept:
            continue
        records[video_id] = kept
        if clips:
            wav = audio_dir / f"{video_id}.wav" if audio_dir is not None else None
            jobs[video_id] = (video_dir / f"{video_id}.mp4", wav, clips, crf)
    # Annotated segments that no transcript line describes cannot be cut.
    report.drop("no transcript", len(set(sums) - seen))
    if not report.dropped.get("no transcript"):
        report.dropped.pop("no transcript", None)
    count_absent(report, lists, seen | set(sums))

    info = release_info("mosei", "multi_label", MOSEI_LABELS, keep_unlisted, crf)
    return cut_and_write(
        out,
        records,
        jobs,
        _cut_video,
        report,
        info=info,
        num_workers=num_workers,
        progress=progress,
    )


def _drop_reason(
    uid: str, text: str, split: str | None, sums: dict[str, list[float]], keep_unlisted: bool
) -> str | None:
    if uid not in sums:
        return "no labels"
    if not text:
        return "empty transcript"
    if split is None and not keep_unlisted:
        return "not in a split"
    return None


def _cut_video(video: Path, wav: Path | None, clips: list[ClipSpec], crf: int) -> list[str]:
    """Cut one video's segments; returns the video paths of clips without frames."""
    if not video.is_file():
        raise DataError(f"{video}: missing")
    for clip in clips:
        clip.video_out.parent.mkdir(parents=True, exist_ok=True)
    if wav is not None and wav.is_file():
        cut_audio_clips(wav, clips)
    else:
        cut_audio_clips(video, clips, from_video=True)
    return [str(c.video_out) for c in cut_video_clips(video, clips, crf=crf)]
