"""IEMOCAP (Busso et al. 2008) from its official release into a mesm dataset folder.

Accepted layout (the official ``IEMOCAP_full_release``)::

    release_dir/Session1 .. Session5/dialog/
      avi/DivX/<dialog>.avi           two-person video of the dialog (speakers left and right)
      wav/<dialog>.wav                the dialog's audio
      EmoEvaluation/<dialog>.txt      lines, TAB-separated:
                                      "[6.2901 - 8.2357]  Ses01F_impro01_F000  neu  [2.5, 2.5, 2.5]"
      transcriptions/<dialog>.txt     lines "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."

What `prepare_iemocap` writes (cut clips, so the dataset folder is self-contained)::

    out_dir/dataset.json, manifest.jsonl
    out_dir/clips/<dialog>/<utterance id>.mp4   the utterance's span, speaker's half of the frame
    out_dir/clips/<dialog>/<utterance id>.wav   the same span of the dialog audio

* The speaker's half: an id ``Ses01F_impro01_M000`` names the session's lead letter (F, in
  "Ses01F") and the speaker's letter (M, first letter of the last part); the speaker sits on the
  LEFT half when they are equal, else on the right (the layout of the recordings, as in the paper's
  code). A stereo dialog WAV keeps channel 0 for left speakers and channel 1 for right ones (as the
  paper's code); a mono one is kept as is.
* Labels: the 6 classes of the paper (ang, exc, fru, hap, neu, sad), single-label; utterances with
  other labels (xxx, oth, sur, fea, dis) are dropped and counted per label.
* Splits: the paper's lists (`mesm.resources.split_file`). Utterances in no list are dropped and
  counted ("not in a split"), unless `keep_unlisted` (then their split is null); listed ids missing
  from the release are counted in the report.
* Utterances without a transcript are dropped and counted; a dialog whose media cannot be read is
  reported and its utterances counted under "media error".
* Reruns reuse clips already written (each clip is written to a temporary name, then renamed).
"""

from __future__ import annotations

import os
import re
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

IEMOCAP_LABELS = ("ang", "exc", "fru", "hap", "neu", "sad")

_EVAL_RE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)")
_TRANSCRIPT_RE = re.compile(r"^(Ses\S+)\s+\[\s*[\d.]+\s*-\s*[\d.]+\s*\]:\s?(.*)$")


def parse_evaluation(path: Path) -> dict[str, tuple[float, float, str]]:
    """EmoEvaluation file -> utterance id -> (start s, end s, label)."""
    out = {}
    for line in read_release_text(path).splitlines():
        match = _EVAL_RE.match(line.strip())
        if match:
            start, end, uid, label = match.groups()
            out[uid] = (float(start), float(end), label)
    return out


def parse_transcription(path: Path) -> dict[str, str]:
    """Transcription file -> utterance id -> text (stripped)."""
    out = {}
    for line in read_release_text(path).splitlines():
        match = _TRANSCRIPT_RE.match(line.strip())
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


def speaker_half(uid: str) -> str:
    """ "left" if the utterance's speaker letter equals its session's lead letter, else "right"."""
    parts = uid.split("_")
    return "left" if parts[0][-1] == parts[-1][0] else "right"


def prepare_iemocap(
    release_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    keep_unlisted: bool = False,
    num_workers: int = 0,
    overwrite: bool = False,
    crf: int = 18,
    progress: bool = True,
) -> PrepareReport:
    """Build a mesm dataset folder from the official IEMOCAP release (see the module docstring).

    Args:
        release_dir: the folder holding Session1 .. Session5.
        out_dir: the dataset folder to write.
        keep_unlisted: keep utterances in none of the paper's split lists (split null).
        num_workers: processes cutting dialogs in parallel (0: this process).
        overwrite: cut clips again even if they exist.
        crf: H.264 quality of the clips (lower is better; 18 is visually lossless).
        progress: show a progress bar.

    Returns:
        The report (also stored under "prepare" in dataset.json).

    Raises:
        DataError: no EmoEvaluation files under `release_dir`.
    """
    release, out = Path(release_dir), Path(out_dir)
    evaluations = sorted(
        p for p in release.glob("Session*/dialog/EmoEvaluation/*.txt") if not p.name.startswith(".")
    )
    if not evaluations:
        raise DataError(
            f"{release}: no Session*/dialog/EmoEvaluation/*.txt (not an IEMOCAP release)"
        )
    lists = paper_split_lists("iemocap")
    report = PrepareReport()
    records: dict[str, list[Record]] = {}
    jobs: dict[str, tuple] = {}
    seen: set[str] = set()
    for evaluation in evaluations:
        dialog = evaluation.stem
        base = evaluation.parent.parent
        labels = parse_evaluation(evaluation)
        texts_file = base / "transcriptions" / f"{dialog}.txt"
        texts = parse_transcription(texts_file) if texts_file.is_file() else {}
        seen.update(labels)
        kept, clips = _select(dialog, labels, texts, lists, out, report, keep_unlisted, overwrite)
        if not kept:
            continue
        records[dialog] = kept
        if clips:
            avi = base / "avi" / "DivX" / f"{dialog}.avi"
            wav = base / "wav" / f"{dialog}.wav"
            jobs[dialog] = (avi, wav, clips, crf)
    count_absent(report, lists, seen)

    info = release_info("iemocap", "single_label", IEMOCAP_LABELS, keep_unlisted, crf)
    return cut_and_write(
        out,
        records,
        jobs,
        _cut_dialog,
        report,
        info=info,
        num_workers=num_workers,
        progress=progress,
    )


def _select(
    dialog: str,
    labels: dict[str, tuple[float, float, str]],
    texts: dict[str, str],
    lists: dict[str, set[str]],
    out: Path,
    report: PrepareReport,
    keep_unlisted: bool,
    overwrite: bool,
) -> tuple[list[Record], list[ClipSpec]]:
    kept, clips = [], []
    for uid, (start, end, label) in sorted(labels.items()):
        if label not in IEMOCAP_LABELS:
            report.drop(f"label {label}")
            continue
        text = texts.get(uid, "")
        if not text:
            report.drop("no transcript")
            continue
        split = split_of(uid, lists)
        if split is None and not keep_unlisted:
            report.drop("not in a split")
            continue
        half = speaker_half(uid)
        video = f"clips/{dialog}/{uid}.mp4"
        audio = f"clips/{dialog}/{uid}.wav"
        kept.append(
            Record(
                id=uid,
                video=video,
                audio=audio,
                text=text,
                labels=(label,),
                speaker=f"{uid[:5]}_{uid.split('_')[-1][0]}",
                split=split,
            )
        )
        if overwrite or not ((out / video).is_file() and (out / audio).is_file()):
            clips.append(
                ClipSpec(
                    start=start,
                    end=end,
                    video_out=out / video,
                    audio_out=out / audio,
                    half=half,  # type: ignore[arg-type]
                    channel=0 if half == "left" else 1,
                )
            )
    return kept, clips


def _cut_dialog(avi: Path, wav: Path, clips: list[ClipSpec], crf: int) -> list[str]:
    """Cut one dialog's clips; returns the video paths of clips without frames."""
    for path in (avi, wav):
        if not path.is_file():
            raise DataError(f"{path}: missing")
    for clip in clips:
        clip.video_out.parent.mkdir(parents=True, exist_ok=True)
    cut_audio_clips(wav, clips)
    return [str(c.video_out) for c in cut_video_clips(avi, clips, crf=crf)]
