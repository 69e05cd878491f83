"""The authors' released processed data (``*_RAW_PROCESSED``) as a mesm dataset folder.

Accepted layout (the download linked from the paper's repository, as its preprocessing notebooks
write it)::

    IEMOCAP_RAW_PROCESSED/
      meta.pkl                     {utterance id: {"text": str, "label": "neu", "fps": 29.97, ...}}
      <dialog>/<utterance id>/     (or directly <utterance id>/)
        image_L_<i>.jpg, image_R_<i>.jpg   every frame of the utterance, both halves (224×224)
        audio_L.wav, audio_R.wav           the dialog's two channels, cut to the utterance
    MOSEI_RAW_PROCESSED/
      meta.pkl                     {utterance id: {"text": str, "label": [6 ints, 0/1]}}
      <utterance id>/image_<i>.jpg, audio.wav

Frame rates: IEMOCAP folders hold every video frame, at the ``fps`` meta.pkl records (default
`iemocap_fps`, 30, when absent); the MOSEI folders hold frames the authors' script already sampled
every 500 ms, so they are at `mosei_fps` = 2 frames per second. With the default
``img_interval_ms`` of 500 preprocessing then keeps every MOSEI image.

The IEMOCAP speaker's half follows the utterance id (see `mesm.data.prepare.iemocap`): left →
``image_L_*`` and ``audio_L.wav``. Splits are the paper's lists; ids in no list are dropped and
counted, as are meta entries without a media folder.

``meta.pkl`` is read with `mesm.data.pickles.RestrictedUnpickler`, which admits only plain
containers, numbers and strings: a pickle naming any other class or function (which could run
code) is refused.

The manifest is written into the processed folder itself (the default), or into `out_dir` with a
``media`` symlink to the processed folder, so that every path stays inside the dataset folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from mesm.data.errors import DataError
from mesm.data.manifest import DatasetInfo, Record, write_dataset
from mesm.data.pickles import load_restricted_pickle
from mesm.data.prepare.common import PrepareReport, count_absent, paper_split_lists, split_of
from mesm.data.prepare.iemocap import IEMOCAP_LABELS, speaker_half
from mesm.data.prepare.mosei import MOSEI_LABELS


def prepare_released(
    processed_dir: str | os.PathLike,
    dataset: Literal["iemocap", "mosei"],
    out_dir: str | os.PathLike | None = None,
    *,
    keep_unlisted: bool = False,
    iemocap_fps: float = 30.0,
    mosei_fps: float = 2.0,
) -> PrepareReport:
    """Write a manifest for the authors' processed data (see the module docstring).

    Args:
        processed_dir: ``IEMOCAP_RAW_PROCESSED`` or ``MOSEI_RAW_PROCESSED``.
        dataset: which of the two it is.
        out_dir: the dataset folder (None: the processed folder itself).
        keep_unlisted: keep utterances in none of the paper's split lists.
        iemocap_fps: IEMOCAP frame rate where meta.pkl records none.
        mosei_fps: rate of the MOSEI frame folders (the authors sampled every 500 ms).

    Returns:
        The report (also stored under "prepare" in dataset.json).

    Raises:
        DataError: unreadable or unsafe meta.pkl, or an unexpected meta layout.
    """
    if dataset not in ("iemocap", "mosei"):
        raise ValueError(f"dataset must be 'iemocap' or 'mosei', got {dataset!r}")
    processed = Path(processed_dir)
    meta = load_restricted_pickle(processed / "meta.pkl")
    if not isinstance(meta, dict):
        raise DataError(f"{processed / 'meta.pkl'}: expected a dict of utterances")
    root, prefix = _output_root(processed, out_dir)
    folders = _utterance_folders(processed)
    lists = paper_split_lists(dataset)
    report = PrepareReport()
    records = []
    for uid in sorted(meta):
        entry = meta[uid]
        if not isinstance(entry, dict) or "label" not in entry:
            raise DataError(f"{processed / 'meta.pkl'}: entry {uid!r} lacks a 'label'")
        split = split_of(uid, lists)
        text = str(entry.get("text") or "").strip()
        folder = folders.get(uid)
        if folder is None:
            report.drop("no media folder")
        elif not text:
            report.drop("empty transcript")
        elif split is None and not keep_unlisted:
            report.drop("not in a split")
        elif dataset == "iemocap":
            record = _iemocap_record(uid, entry, text, split, prefix + folder, iemocap_fps)
            if record is None:
                report.drop(f"label {entry['label']}")
            else:
                records.append(record)
        else:
            records.append(_mosei_record(uid, entry, text, split, prefix + folder, mosei_fps))
    count_absent(report, lists, set(meta))
    report.kept = len(records)
    report.splits = {s: sum(r.split == s for r in records) for s in ("train", "valid", "test")}
    info = DatasetInfo(
        name=dataset,
        task="single_label" if dataset == "iemocap" else "multi_label",
        label_names=IEMOCAP_LABELS if dataset == "iemocap" else MOSEI_LABELS,
        prepare={"source": f"{dataset} released processed data", **report.to_dict()},
        # The media link leads to the release outside the folder, on purpose.
        external_links=("media",) if prefix else (),
    )
    write_dataset(root, info, records)
    return report


def _output_root(processed: Path, out_dir: str | os.PathLike | None) -> tuple[Path, str]:
    if out_dir is None or Path(out_dir).resolve() == processed.resolve():
        return processed, ""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    link = root / "media"
    if link.is_symlink() or link.exists():
        if link.resolve() != processed.resolve():
            raise DataError(f"{link}: exists and does not point to {processed}")
    else:
        link.symlink_to(processed.resolve(), target_is_directory=True)
    return root, "media/"


def _utterance_folders(processed: Path) -> dict[str, str]:
    """Utterance id -> folder relative to `processed` (one or two levels deep)."""
    out = {}
    for path in sorted(processed.glob("*/*")) + sorted(processed.glob("*")):
        if path.is_dir() and (any(path.glob("*.wav")) or any(path.glob("*.jpg"))):
            out.setdefault(path.name, path.relative_to(processed).as_posix())
    return out


def _iemocap_record(
    uid: str, entry: dict, text: str, split: str | None, folder: str, default_fps: float
) -> Record | None:
    label = entry["label"]
    if label not in IEMOCAP_LABELS:
        return None
    side = "L" if speaker_half(uid) == "left" else "R"
    fps = entry.get("fps")
    return Record(
        id=uid,
        video=folder,
        audio=f"{folder}/audio_{side}.wav",
        text=text,
        labels=(label,),
        speaker=f"{uid[:5]}_{uid.split('_')[-1][0]}",
        split=split,
        fps=float(fps) if isinstance(fps, (int, float)) and fps > 0 else default_fps,
        frame_pattern=f"image_{side}_*.jpg",
    )


def _mosei_record(
    uid: str, entry: dict, text: str, split: str | None, folder: str, fps: float
) -> Record:
    values = entry["label"]
    if not isinstance(values, (list, tuple)) or len(values) != len(MOSEI_LABELS):
        raise DataError(f"meta.pkl: entry {uid!r} label must be 6 numbers, got {values!r}")
    labels = tuple(name for name, v in zip(MOSEI_LABELS, values, strict=True) if v > 0)
    return Record(
        id=uid,
        video=folder,
        audio=f"{folder}/audio.wav",
        text=text,
        labels=labels,
        split=split,
        fps=fps,
        frame_pattern="image_*.jpg",
    )
