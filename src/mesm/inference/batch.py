"""Batch prediction: many clips (files, folders, manifests) in, one row per clip out.

`expand_inputs` turns what the user names into a list of `ClipInput`:

* a video file → that clip;
* a folder holding video files → each of them (natural name order; sub-folders are not
  searched); a folder holding only images → one frame-folder clip;
* a manifest: ``.csv`` with a header holding ``clip`` (or ``video``) and optionally
  ``transcript`` (or ``text``) and ``audio``; ``.jsonl`` with one object per line with the same
  keys (a mesm dataset's ``manifest.jsonl`` works: ``video``, ``audio``, ``text``, ``start``,
  ``end``); ``.txt`` with one path per line. Relative paths are relative to the manifest's
  folder.

`predict_clips` runs a `Predictor` over them and keeps going past a clip that fails: each
failure is recorded with its path and reason. Ctrl-C (KeyboardInterrupt) stops it with
`Interrupted`, which carries the rows and failures of the clips that finished.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from mesm.data.errors import input_errors
from mesm.data.media.video import natural_key
from mesm.errors import UsageError
from mesm.inference.outputs import clip_row
from mesm.inference.predict import Predictor

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".txt")
# What a bad clip may raise (our errors, OS errors on its files, the decoders' own errors);
# anything else (TypeError, KeyError, a RuntimeError from torch, ...) is a bug and surfaces.
CLIP_ERRORS = input_errors()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a batch, with what finished before it (a KeyboardInterrupt, so it stops
    the command as any Ctrl-C does); the message says how far it got.

    Attributes:
        rows: the rows of the items that finished.
        failures: (path, reason) of the items that failed before it.
    """

    def __init__(self, message: str, rows: list[dict[str, Any]], failures: list[tuple[str, str]]):
        super().__init__(message)
        self.rows = rows
        self.failures = failures


@dataclass(frozen=True)
class ClipInput:
    """One clip to predict.

    Attributes:
        clip: the video file or frame folder.
        transcript: its text (None: take the command's default).
        audio: a separate audio file (None: the clip's own track).
        start: span start in seconds (None: from the beginning).
        end: span end in seconds (None: to the end).
    """

    clip: Path
    transcript: str | None = None
    audio: Path | None = None
    start: float | None = None
    end: float | None = None


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[ClipInput]:
    """The clips named by files, folders and manifests (rules in the module docstring).

    A path that does not exist is kept as a clip, so that it is reported as a failure with the
    others rather than stopping the run.

    Raises:
        UsageError: a manifest that cannot be read (naming the file and line).
    """
    clips: list[ClipInput] = []
    for raw in paths:
        path = Path(raw)
        kind = input_kind(path)
        if kind == "videos":
            clips.extend(ClipInput(v) for v in _folder_videos(path) if v.is_file())
        elif kind == "manifest":
            clips.extend(read_clip_manifest(path))
        else:
            # A folder of frames is one clip; an empty or unrelated folder fails as one.
            clips.append(ClipInput(path))
    return clips


def input_kind(path: Path) -> Literal["clip", "videos", "manifest"]:
    """What a named input is: one clip (a video file, a frame folder, or a path that does not
    exist: it fails as a clip), a folder of videos, or a manifest."""
    if path.is_dir():
        return "videos" if _folder_videos(path) else "clip"
    if path.is_file() and _is_manifest_name(path):
        return "manifest"
    return "clip"


def one_clip(paths: Sequence[str | os.PathLike]) -> Path | None:
    """The clip, when `paths` name exactly one clip (not a folder of videos, not a manifest).

    A missing file with a manifest's suffix is not one clip either: it fails as one input of
    a batch (named with the others) instead of ending the command.
    """
    if len(paths) != 1:
        return None
    path = Path(paths[0])
    if input_kind(path) != "clip" or (not path.is_dir() and _is_manifest_name(path)):
        return None
    return path


def _is_manifest_name(path: Path) -> bool:
    return path.suffix.lower() in MANIFEST_SUFFIXES


def _folder_videos(path: Path) -> list[Path]:
    names = sorted(os.listdir(path), key=natural_key)
    return [path / n for n in names if n.lower().endswith(VIDEO_SUFFIXES)]


def read_clip_manifest(path: Path) -> list[ClipInput]:
    """Clips listed in a .csv, .jsonl or .txt manifest (see the module docstring).

    Raises:
        UsageError: unreadable file, missing column, or a malformed line (naming it).
    """
    base = path.parent
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read the manifest ({err})") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [
            ClipInput(base / line.strip())
            for line in text.splitlines()
            if line.strip() and not line.startswith("#")
        ]
    entries: list[tuple[int, dict[str, Any]]] = []
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        fields = set(reader.fieldnames or [])
        if not fields & {"clip", "video"}:
            raise UsageError(f"{path}: the CSV needs a 'clip' (or 'video') column")
        entries = [(i, dict(row)) for i, row in enumerate(reader, start=2)]
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"{path}: line {i}: not JSON ({err.msg})") from None
            if not isinstance(value, dict):
                raise UsageError(f"{path}: line {i}: expected an object")
            entries.append((i, value))
    clips = []
    for line, entry in entries:
        clip = entry.get("clip") or entry.get("video")
        if not isinstance(clip, str) or not clip:
            raise UsageError(f"{path}: line {line}: no 'clip' (or 'video') path")
        text_value = entry.get("transcript", entry.get("text"))
        audio = entry.get("audio")
        try:
            start, end = (
                None if v in (None, "") else float(v)
                for v in (entry.get("start"), entry.get("end"))
            )
        except (TypeError, ValueError):
            raise UsageError(f"{path}: line {line}: 'start'/'end' must be numbers") from None
        clips.append(
            ClipInput(
                base / clip,
                transcript=None if text_value is None else str(text_value),
                audio=base / audio if isinstance(audio, str) and audio else None,
                start=start,
                end=end,
            )
        )
    return clips


def predict_clips(
    predictor: Predictor,
    clips: Sequence[ClipInput],
    *,
    transcript: str = "",
    audio: str | os.PathLike | None = None,
    progress: bool = True,
    on_failure: Callable[[Path, str], None] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Predict every clip; a clip that fails is recorded and skipped.

    Args:
        predictor: the loaded checkpoint.
        clips: from `expand_inputs`.
        transcript: the text of clips whose input names none (the words themselves: a
            file was read by the caller).
        audio: a separate audio file for clips whose input names none.
        progress: show a progress bar over clips.
        on_failure: called with (path, reason) as each failure happens.

    Returns:
        (rows, failures): one result of `Predictor.predict_clip` per clip that worked (in input
        order), and (path, reason) per clip that failed.

    Raises:
        Interrupted: Ctrl-C; it holds the rows and failures of the clips that finished.
    """
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    try:
        _predict_each(predictor, clips, transcript, audio, progress, on_failure, rows, failures)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after {len(rows) + len(failures)} of {len(clips)} clip(s)",
            rows,
            failures,
        ) from None
    return rows, failures


def _predict_each(
    predictor: Predictor,
    clips: Sequence[ClipInput],
    transcript: str,
    audio: str | os.PathLike | None,
    progress: bool,
    on_failure: Callable[[Path, str], None] | None,
    rows: list[dict[str, Any]],
    failures: list[tuple[str, str]],
) -> None:
    """`predict_clips`' loop: appends to `rows` and `failures` as each clip finishes."""
    for item in tqdm(clips, desc="clips", unit="clip", disable=not progress):
        text = transcript if item.transcript is None else item.transcript
        try:
            features = predictor.clip_features(
                item.clip, item.audio or audio, start=item.start, end=item.end
            )
            result = predictor.predict(features, text)
        except CLIP_ERRORS as err:
            reason = failure_line(err)
            failures.append((str(item.clip), reason))
            if on_failure is not None:
                on_failure(item.clip, reason)
            continue
        rows.append(clip_row(result, item.clip, start=item.start, end=item.end))


def failure_line(err: BaseException) -> str:
    """What a failed clip is reported with: the error's first line (its type when empty)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
