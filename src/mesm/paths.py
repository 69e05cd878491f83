"""What a command reads and writes, checked before any work: an output never replaces an input.

A command declares its inputs (`Input`: the checkpoint or model folder, videos, audio, transcript
and subtitle files, dataset folders, ...) and its outputs (`Output`: ``--json``, ``--csv``,
``--out``, an export folder, ...), and `check_paths` refuses, naming the file, before anything is
loaded or computed:

* an output that is one of the inputs: the same path after resolving symlinks, or the same file
  through a hard link (the same ``st_dev``/``st_ino``); a folder output that is an input folder;
  an output inside an input model folder (nothing is written there); an output that is an existing
  file inside an input folder (a video, a manifest: the command's input data);
* two outputs that are the same file;
* an existing output file, or an output folder that already holds files, unless ``overwrite``
  (``--overwrite``) or the output's own rule says otherwise (``existing="continue"``: a resumable
  command carries on in it; ``existing="command"``: the command checks it itself, e.g. `mesm
  train` refuses a folder that holds a run);
* an output whose location cannot be written: a folder where a file is expected or the other way
  round, a path under a regular file, a folder the file system refuses (read-only, no permission;
  tried by creating and removing a temporary file in the nearest existing folder, so it also holds
  for root, whom file modes do not stop).

Missing folders on an output's path are allowed: the folders of a file output are created once
every check has passed (before any work); a folder output is made by the command that fills it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mesm.errors import OutputPathError
from mesm.files import make_output_dir, temporary_name


@dataclass(frozen=True)
class Input:
    """A path a command reads.

    Attributes:
        path: the file or folder (need not exist: a missing input is the command's own error).
        flag: how the user named it (``--checkpoint``, ``CLIP``).
        model: a model folder: nothing may be written anywhere inside it.
    """

    path: Path
    flag: str
    model: bool = False


@dataclass(frozen=True)
class Output:
    """A path a command writes.

    Attributes:
        path: the file or folder.
        flag: how the user named it (``--json``, ``--out``).
        kind: "file" or "folder".
        existing: what an existing output means: "overwrite" (replaced only with
            ``--overwrite``), "continue" (a resumable command carries on in it) or "command"
            (the command has its own rule and checks it).
        writes: for a folder, the names of files the command writes in it (each is checked
            against the inputs, so a folder holding an input is refused when it would replace
            it).
    """

    path: Path
    flag: str
    kind: Literal["file", "folder"] = "file"
    existing: Literal["overwrite", "continue", "command"] = "overwrite"
    writes: tuple[str, ...] = ()


def check_paths(
    inputs: Sequence[Input], outputs: Sequence[Output], *, overwrite: bool = False
) -> None:
    """Refuses (see the module docstring) before any work; then makes file outputs' folders.

    Raises:
        OutputPathError: naming the output at fault (``filename``) and why (``strerror``).
    """
    for i, out in enumerate(outputs):
        _check_location(out)
        for target in [out.path, *(out.path / name for name in out.writes)]:
            for source in inputs:
                _check_not_input(target, out.flag, source)
        for other in outputs[:i]:
            if other.kind == out.kind == "file" and _same(other.path, out.path):
                raise OutputPathError(
                    errno.EINVAL, f"is named by both {other.flag} and {out.flag}", str(out.path)
                )
        if not overwrite:
            _check_not_existing(out)
    for out in outputs:
        if out.kind == "file":
            make_output_dir(out.path.parent)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    """The same path once symlinks are resolved, or the same file (a hard link)."""
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: not the same file
        return False


def _inside(path: Path, folder: Path) -> bool:
    return _resolved(path).is_relative_to(_resolved(folder))


def _check_not_input(target: Path, flag: str, source: Input) -> None:
    def refuse(why: str) -> None:
        raise OutputPathError(errno.EINVAL, why, str(target))

    if _same(target, source.path):
        refuse(f"is the command's input ({source.flag}); {flag} would replace it")
    if not source.path.is_dir():
        return
    if source.model and _inside(target, source.path):
        refuse(
            f"lies inside the model folder {source.path} ({source.flag}); {flag} would change it"
        )
    if target.is_file() and _inside(target, source.path):
        refuse(
            f"is a file inside the input folder {source.path} ({source.flag}); {flag} would "
            "replace it"
        )


def _check_not_existing(out: Output) -> None:
    if out.existing != "overwrite":
        return
    if out.kind == "file" and out.path.is_file():
        raise OutputPathError(
            errno.EEXIST,
            f"already exists; pass --overwrite to replace it (or choose another {out.flag})",
            str(out.path),
        )
    if out.kind == "folder" and out.path.is_dir() and any(out.path.iterdir()):
        raise OutputPathError(
            errno.EEXIST,
            "already holds files (earlier results?); pass --overwrite to write over them (or "
            f"choose another {out.flag})",
            str(out.path),
        )


def _check_location(out: Output) -> None:
    path = out.path
    if out.kind == "file" and path.is_dir():
        raise OutputPathError(errno.EISDIR, f"is a folder, not a file ({out.flag})", str(path))
    if out.kind == "folder" and path.exists() and not path.is_dir():
        raise OutputPathError(errno.ENOTDIR, f"is a file, not a folder ({out.flag})", str(path))
    _check_writable(path if out.kind == "folder" else path.parent, out.flag)


def _check_writable(folder: Path, flag: str) -> None:
    """Tries a temporary file in `folder` or, when it does not exist yet, its nearest existing
    ancestor (where the missing folders would be made)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(
            errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)} (where {flag} goes)", str(existing)
        )
    probe = temporary_name(existing / "write-check")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as err:
        raise OutputPathError(
            err.errno, f"{err.strerror or 'cannot be written'} (where {flag} goes)", str(existing)
        ) from None
    os.unlink(probe)
