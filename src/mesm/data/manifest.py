"""Dataset folders: a header, a JSON Lines manifest and media files, validated up front.

A dataset is a folder::

    my_dataset/
      dataset.json        header (below)
      manifest.jsonl      one JSON object per line, one line per utterance
      clips/...           media, anywhere under the folder
      cache/<key>/...     feature cache written by `preprocess_dataset` (`mesm.data.media.cache`)

``dataset.json``::

    {"format": "mesm-dataset", "version": 1, "name": "iemocap",
     "task": "single_label",                # or "multi_label"
     "label_names": ["ang", "exc", "fru", "hap", "neu", "sad"],
     "prepare": {...},                      # the parameters `prepare_*` used (free-form)
     "external_links": ["media"]}           # optional: links in the folder allowed to lead out

Each ``manifest.jsonl`` line (keys other than these are an error, to catch typos)::

    {"id": "Ses01F_impro01_F000",           # unique; letters, digits, "_", "-", "." (not first)
     "video": "clips/Ses01F_impro01/Ses01F_impro01_F000.mp4",
     "audio": "clips/Ses01F_impro01/Ses01F_impro01_F000.wav",   # null: the video's audio track
     "text": "Excuse me.",                  # non-empty transcript
     "labels": ["neu"],                     # names from label_names; exactly one if single_label,
                                            # any number (also none) if multi_label
     "speaker": "Ses01_F",                  # optional
     "split": "train",                      # optional: train, valid or test
     "start": 6.29, "end": 8.24,            # optional time span in seconds (cuts from long media)
     "fps": null, "frame_pattern": null}    # frame folders only (below)

Paths are relative to the dataset folder, use "/" and may not leave it (no absolute paths, no
"..", and no symbolic link inside the folder that points outside it: links are resolved first,
except the top-level links the header names in ``external_links``, whose contents may not lead
further out; `prepare released` declares its ``media`` link this way).
``video`` is a media file PyAV/ffmpeg can read, or a *frame folder*: images sorted by name with
numbers compared as numbers (``img_2.jpg`` before ``img_10.jpg``), optionally filtered by the glob
``frame_pattern`` (default: every .jpg/.jpeg/.png/.bmp).  A frame folder's timestamps come from a
``timestamps.txt`` inside it (one time in seconds per image, in that order) or else from ``fps``
(image i is at i / fps seconds).  ``start``/``end`` apply to the video and the audio.

`read_dataset` checks every line and every referenced file before anything is decoded and raises
one `ManifestError` listing all problems, each with its line number and id.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mesm.data.errors import DataError, ManifestError
from mesm.files import atomic_write_text

__all__ = ["atomic_write_text"]  # re-exported: the data writers' one atomic writer

FORMAT = "mesm-dataset"
VERSION = 1
HEADER_FILE = "dataset.json"
MANIFEST_FILE = "manifest.jsonl"
TIMESTAMPS_FILE = "timestamps.txt"
SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

Task = Literal["single_label", "multi_label"]

_ID_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
_RECORD_KEYS = frozenset(
    {"id", "video", "audio", "text", "labels", "speaker", "split", "start", "end", "fps"}
    | {"frame_pattern"}
)


@dataclass(frozen=True)
class DatasetInfo:
    """The header of a dataset folder.

    Attributes:
        name: a short name, e.g. "iemocap".
        task: "single_label" (exactly one label per utterance) or "multi_label".
        label_names: the K class names, in the order of the label vectors.
        prepare: the parameters the preparation step used (recorded for provenance).
        external_links: names of top-level symbolic links in the folder that may point outside
            it (everything else must resolve inside the folder).
    """

    name: str
    task: Task
    label_names: tuple[str, ...]
    prepare: dict[str, Any] = field(default_factory=dict)
    external_links: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in ("single_label", "multi_label"):
            raise ValueError(f"task must be 'single_label' or 'multi_label', got {self.task!r}")
        if not self.label_names or len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"label_names must be non-empty and unique, got {self.label_names}")


@dataclass(frozen=True)
class Record:
    """One utterance of a manifest (see the module docstring for the meaning of each field)."""

    id: str
    video: str
    text: str
    labels: tuple[str, ...]
    audio: str | None = None
    speaker: str | None = None
    split: str | None = None
    start: float | None = None
    end: float | None = None
    fps: float | None = None
    frame_pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest line for this record (a JSON-serialisable dict)."""
        out = asdict(self)
        out["labels"] = list(self.labels)
        return out


def read_dataset(
    root: str | os.PathLike, *, check_files: bool = True
) -> tuple[DatasetInfo, list[Record]]:
    """Read and validate a dataset folder.

    Args:
        root: the dataset folder.
        check_files: also check that every referenced file exists (and audio files are
            non-empty). Costs one `stat` per file.

    Returns:
        The header and the records in manifest order.

    Raises:
        ManifestError: listing every problem found (bad header, bad lines, missing files).
    """
    root = Path(root)
    info = read_header(root)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError([f"{path}: missing (every dataset folder needs a {MANIFEST_FILE})"])
    problems: list[str] = []
    records: list[Record] = []
    first_line: dict[str, int] = {}
    with open(path, "rb") as fh:
        for lineno, raw_line in enumerate(fh, start=1):
            where = f"{MANIFEST_FILE}:{lineno}"
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as err:
                problems.append(f"{where}: not UTF-8 ({err.reason} at byte {err.start})")
                continue
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(f"{where}: not valid JSON ({err.msg})")
                continue
            record, errs = _parse_record(raw, info, root if check_files else None)
            rid = raw.get("id") if isinstance(raw, dict) else None
            where = f"{where} ({rid})" if isinstance(rid, str) else where
            problems += [f"{where}: {e}" for e in errs]
            if record is None:
                continue
            if record.id in first_line:
                problems.append(f"{where}: duplicate id (first on line {first_line[record.id]})")
                continue
            first_line[record.id] = lineno
            records.append(record)
    if not problems and not records:
        problems.append(f"{MANIFEST_FILE}: no records")
    if problems:
        raise ManifestError(problems, header=f"invalid dataset {root}")
    return info, records


def read_header(root: str | os.PathLike) -> DatasetInfo:
    """Read ``dataset.json`` of a dataset folder.

    Raises:
        ManifestError: if it is missing or malformed.
    """
    path = Path(root) / HEADER_FILE
    if not path.is_file():
        raise ManifestError([f"{path}: missing (every dataset folder needs a {HEADER_FILE})"])
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError([f"{path}: not valid JSON ({err})"]) from None
    problems = []
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        problems.append(f"{path}: 'format' must be {FORMAT!r}")
    elif raw.get("version") != VERSION:
        problems.append(f"{path}: unsupported version {raw.get('version')!r} (this is {VERSION})")
    else:
        names = raw.get("label_names")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            problems.append(f"{path}: 'label_names' must be a list of non-empty strings")
        if raw.get("task") not in ("single_label", "multi_label"):
            problems.append(f"{path}: 'task' must be 'single_label' or 'multi_label'")
        if not isinstance(raw.get("prepare") or {}, dict):
            problems.append(f"{path}: 'prepare' must be a JSON object (the preparation settings)")
        links = raw.get("external_links") or []
        if not isinstance(links, list) or not all(
            isinstance(n, str) and n and "/" not in n and n not in (".", "..") for n in links
        ):
            problems.append(f"{path}: 'external_links' must be a list of top-level entry names")
    if problems:
        raise ManifestError(problems)
    try:
        return DatasetInfo(
            name=str(raw.get("name", Path(root).name)),
            task=raw["task"],
            label_names=tuple(raw["label_names"]),
            prepare=dict(raw.get("prepare") or {}),
            external_links=tuple(raw.get("external_links") or ()),
        )
    except ValueError as err:
        raise ManifestError([f"{path}: {err}"]) from None


def write_dataset(root: str | os.PathLike, info: DatasetInfo, records: Iterable[Record]) -> None:
    """Write ``dataset.json`` and ``manifest.jsonl`` atomically (temp file, then rename).

    Args:
        root: the dataset folder (created if needed).
        info: the header.
        records: the utterances, written in this order.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "name": info.name,
        "task": info.task,
        "label_names": list(info.label_names),
        "prepare": info.prepare,
    }
    if info.external_links:
        header["external_links"] = list(info.external_links)
    lines = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(root / MANIFEST_FILE, lines)
    atomic_write_text(root / HEADER_FILE, json.dumps(header, indent=2, ensure_ascii=False) + "\n")


def resolve(root: str | os.PathLike, relative: str) -> Path:
    """The absolute path of a manifest path, refusing any that would leave `root`.

    Raises:
        DataError: for absolute paths, paths with ".." that escape the dataset folder, and
            symbolic links that point outside it.
    """
    problem = _path_problem(relative)
    if problem:
        raise DataError(f"{relative!r}: {problem}")
    return Path(root) / relative


def _link_problem(root: Path, relative: str, external: tuple[str, ...] = ()) -> str | None:
    """Whether `relative`, with every symbolic link resolved, leaves `root` (or, under a declared
    external link, leaves the link's target)."""
    first = relative.replace("\\", "/").split("/")[0]
    base = (root / first if first in external else root).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(base):
        where = "the dataset folder" if first not in external else f"the {first!r} link's folder"
        return f"leaves {where} (symlink to {target})"
    return None


def label_vector(record: Record, info: DatasetInfo) -> list[float]:
    """The multi-hot (K,) label vector of `record` (one-hot for single-label datasets)."""
    index = {name: i for i, name in enumerate(info.label_names)}
    out = [0.0] * len(info.label_names)
    for name in record.labels:
        out[index[name]] = 1.0
    return out


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Utterance ids from a text file, one per line (blank lines ignored)."""
    return [
        line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


@dataclass
class SplitReport:
    """What `apply_split_lists` did.

    Attributes:
        counts: records per split after assignment.
        unassigned: ids of records in no list (their `split` is left as it was).
        absent: per split, the listed ids that are not in the manifest.
    """

    counts: dict[str, int]
    unassigned: list[str]
    absent: dict[str, list[str]]


def apply_split_lists(
    records: Iterable[Record], lists: Mapping[str, Iterable[str]], *, strict: bool = True
) -> tuple[list[Record], SplitReport]:
    """Set each record's `split` from id lists (e.g. the paper's lists from `mesm.resources`).

    Args:
        records: the utterances.
        lists: split name (train/valid/test) -> ids in that split.
        strict: raise if a listed id is absent from the records (a partial release, or the wrong
            dataset). With False the absent ids are only counted in the report.

    Returns:
        The records with `split` set, and a report.

    Raises:
        ManifestError: an id listed in two splits, an unknown split name, or (strict) listed ids
            absent from the records.
    """
    records = list(records)
    known = {r.id for r in records}
    owner: dict[str, str] = {}
    problems: list[str] = []
    absent: dict[str, list[str]] = {}
    for split, ids in lists.items():
        if split not in SPLITS:
            problems.append(f"unknown split {split!r} (expected one of {SPLITS})")
            continue
        for rid in ids:
            if rid in owner and owner[rid] != split:
                problems.append(f"id {rid} is listed in both {owner[rid]!r} and {split!r}")
            owner[rid] = split
            if rid not in known:
                absent.setdefault(split, []).append(rid)
    if strict:
        for split, ids in absent.items():
            shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
            problems.append(f"{len(ids)} id(s) of split {split!r} are not in the manifest: {shown}")
    if problems:
        raise ManifestError(problems, header="cannot apply split lists")
    out = [_replace(r, split=owner.get(r.id, r.split)) for r in records]
    counts = {s: sum(r.split == s for r in out) for s in SPLITS}
    unassigned = [r.id for r in records if r.id not in owner]
    return out, SplitReport(counts=counts, unassigned=unassigned, absent=absent)


def _replace(record: Record, **changes: Any) -> Record:
    return Record(**{**asdict(record), **changes})


def _path_problem(relative: object) -> str | None:
    if not isinstance(relative, str) or not relative:
        return "must be a non-empty string"
    if relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
        return "absolute paths are not allowed (paths are relative to the dataset folder)"
    parts = relative.replace("\\", "/").split("/")
    depth = 0
    for part in parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return "escapes the dataset folder"
        elif part not in ("", "."):
            depth += 1
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_record(
    raw: object, info: DatasetInfo, root: Path | None
) -> tuple[Record | None, list[str]]:
    """Check one manifest line; returns the record (None if unusable) and every problem."""
    if not isinstance(raw, dict):
        return None, ["a line must be a JSON object"]
    errs: list[str] = []
    unknown = sorted(set(raw) - _RECORD_KEYS)
    if unknown:
        errs.append(f"unknown key(s) {unknown}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        errs.append(f"'id' must match {_ID_RE.pattern} (got {rid!r})")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        errs.append("empty transcript ('text' must be a non-empty string)")
    labels = raw.get("labels")
    label_errs = _label_problems(labels, info)
    errs += label_errs
    if label_errs and not isinstance(labels, list):
        labels = []
    split = raw.get("split")
    if split is not None and split not in SPLITS:
        errs.append(f"'split' must be one of {SPLITS} or null, got {split!r}")
    speaker = raw.get("speaker")
    if speaker is not None and not isinstance(speaker, str):
        errs.append("'speaker' must be a string or null")
    start, end = raw.get("start"), raw.get("end")
    fps, pattern = raw.get("fps"), raw.get("frame_pattern")
    errs += _timing_problems(start, end, fps, pattern)

    video, audio = raw.get("video"), raw.get("audio")
    for key, value in (("video", video), ("audio", audio)):
        if value is None and key == "audio":
            continue
        problem = _path_problem(value)
        if problem:
            errs.append(f"'{key}' {value!r}: {problem}")
        elif root is not None:
            errs += _file_problems(root, key, value, fps, info.external_links)
    if errs:
        return None, errs
    record = Record(
        id=rid,
        video=video,
        text=text,
        labels=tuple(labels),
        audio=audio,
        speaker=speaker,
        split=split,
        start=None if start is None else float(start),
        end=None if end is None else float(end),
        fps=None if fps is None else float(fps),
        frame_pattern=pattern,
    )
    return record, []


def _timing_problems(start: object, end: object, fps: object, pattern: object) -> list[str]:
    """What is wrong with a record's span and frame fields (empty: nothing)."""
    errs = []
    for key, value in (("start", start), ("end", end)):
        if value is not None and (not _is_number(value) or value < 0):
            errs.append(f"'{key}' must be a non-negative number of seconds or null, got {value!r}")
    if _is_number(start) and _is_number(end) and end <= start:
        errs.append(f"empty time span: end {end} <= start {start}")
    if fps is not None and (not _is_number(fps) or fps <= 0):
        errs.append(f"'fps' must be a positive number or null, got {fps!r}")
    if pattern is not None and (not isinstance(pattern, str) or "/" in pattern or not pattern):
        errs.append(f"'frame_pattern' must be a file-name glob without '/', got {pattern!r}")
    return errs


def _label_problems(labels: object, info: DatasetInfo) -> list[str]:
    """What is wrong with a record's 'labels' for this dataset (empty: nothing)."""
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        return ["'labels' must be a list of label names"]
    errs = []
    bad = [x for x in labels if x not in info.label_names]
    if bad:
        errs.append(f"unknown label(s) {bad} (known: {list(info.label_names)})")
    if len(set(labels)) != len(labels):
        errs.append(f"repeated label in {labels}")
    if info.task == "single_label" and len(labels) != 1:
        errs.append(f"a single-label dataset needs exactly one label, got {labels}")
    return errs


def _file_problems(
    root: Path, key: str, relative: str, fps: object, external: tuple[str, ...] = ()
) -> list[str]:
    escape = _link_problem(root, relative, external)
    if escape:
        return [f"{key} file {relative!r} {escape}"]
    path = root / relative
    if key == "video" and path.is_dir():
        if fps is None and not (path / TIMESTAMPS_FILE).is_file():
            return [f"frame folder {relative!r} needs 'fps' or a {TIMESTAMPS_FILE}"]
        return []
    if not path.is_file():
        return [f"{key} file {relative!r} does not exist"]
    if path.stat().st_size == 0:
        return [f"{key} file {relative!r} is empty (0 bytes)"]
    return []
