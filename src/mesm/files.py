"""Atomic file writing (readers see the old file or the whole new one, never a torn one), and
reading the text files users hand us in the encoding they were saved in.

Every file a command writes goes through `atomic_target` (or the `atomic_write_*` shortcuts): the
content goes to a temporary file in the destination's folder, named after this process and a random
token (so concurrent writers never share a temporary), is flushed and fsynced, and is renamed over
the destination. A crash leaves at worst a temporary ``.NAME.PID-TOKEN.tmp``, which
`stale_temporaries` recognises once its process is gone.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mesm.errors import OutputPathError, TextEncodingError

_TMP_RE = re.compile(r"^\..+\.(\d+)-[0-9a-f]+\.tmp$")


def temporary_name(path: Path) -> Path:
    """A per-process, per-call temporary path next to `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), so best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; on success it is fsynced and renamed to `path`.

    For writers that need a file name (safetensors, matplotlib, PyAV). On an exception the
    temporary is removed and `path` is left as it was.

    Raises:
        OutputPathError: `path` is an existing folder.
        OSError: from the file system (with the path), e.g. a read-only or missing folder.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(errno.EISDIR, "is a folder, not a file", str(path))
    tmp = temporary_name(path)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Makes a finished temporary file the file at `path`: fsync, rename, fsync the folder.

    For writers that keep a temporary open across calls (a video encoder); name it with
    `temporary_name`. Everything else uses `atomic_target`.
    """
    _fsync_file(Path(tmp))
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module docstring)."""
    with atomic_target(path) as tmp:
        with open(tmp, "xb") as fh:
            fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    """Write `value` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def make_output_dir(path: str | os.PathLike) -> Path:
    """Creates the output folder `path` (and its parents) if needed, before any work is done.

    Raises:
        OutputPathError: the folder cannot be made (a parent is a file, permission denied, ...);
            ``filename`` names the path the file system refused.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(
            err.errno, err.strerror or str(err), str(err.filename or path)
        ) from None
    return path


def is_temporary(path: Path) -> bool:
    """Whether `path` is named as this module names its temporaries."""
    return _TMP_RE.match(path.name) is not None


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporaries in `folder` left by processes that no longer run (safe to delete).

    Temporaries of live processes (another run writing right now) are not returned.
    """
    out = []
    for tmp in folder.glob(".*.tmp"):
        match = _TMP_RE.match(tmp.name)
        if match is None or not _alive(int(match.group(1))):
            out.append(tmp)
    return out


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would signal it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else
    return True


# Byte-order marks, longest first (UTF-32-LE's mark starts with UTF-16-LE's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
FALLBACK_ENCODING = "cp1252"


class DecodedText(str):
    """Text read from a user's file; `encoding` says how its bytes were decoded."""

    encoding: str

    def __new__(cls, text: str, encoding: str) -> DecodedText:
        obj = super().__new__(cls, text)
        obj.encoding = encoding
        return obj


def decode_text(data: bytes, source: str | os.PathLike, *, fallback: bool = True) -> DecodedText:
    """Decodes a text file a user saved, in the encoding it was saved in.

    The rule: a byte-order mark decides (UTF-8, UTF-16 or UTF-32, the mark removed); without one
    the text is UTF-8, or, when that fails and `fallback` is set, Windows-1252 (the superset of
    Latin-1 that editors on Windows write). Bytes without a mark that hold NUL characters are
    refused (UTF-16 without its mark would otherwise read as garbage).

    Args:
        data: the file's bytes.
        source: the file, for messages.
        fallback: try Windows-1252 after UTF-8 (False: UTF-8 only, for formats that must be).

    Raises:
        TextEncodingError: names the file, the line and the encodings tried.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding.removesuffix("-sig"))
            except UnicodeDecodeError as err:
                raise _encoding_error(source, data, err, f"not {encoding}") from None
            return DecodedText(text, encoding)
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise TextEncodingError(
            f"{source}:{line}: holds NUL bytes (UTF-16 without a byte-order mark?); save it as "
            "UTF-8"
        )
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as err:
        if not fallback:
            raise _encoding_error(source, data, err, "not UTF-8") from None
        utf8_error = err
    try:
        return DecodedText(data.decode(FALLBACK_ENCODING), FALLBACK_ENCODING)
    except UnicodeDecodeError:
        raise _encoding_error(
            source, data, utf8_error, f"not UTF-8, UTF-16 or {FALLBACK_ENCODING}"
        ) from None


def read_text(path: str | os.PathLike, *, fallback: bool = True) -> DecodedText:
    """A user's text file decoded by the rule of :func:`decode_text`.

    Raises:
        TextEncodingError: naming the file and line; OSError: the file cannot be read.
    """
    return decode_text(Path(path).read_bytes(), path, fallback=fallback)


def _encoding_error(
    source: str | os.PathLike, data: bytes, err: UnicodeDecodeError, what: str
) -> TextEncodingError:
    line = data[: err.start].count(b"\n") + 1
    return TextEncodingError(f"{source}:{line}: {what} ({err.reason} at byte {err.start})")
