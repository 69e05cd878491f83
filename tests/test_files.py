"""Every file mesm writes goes through one atomic writer (temp file + fsync + rename)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mesm.errors import OutputPathError
from mesm.files import atomic_target, atomic_write_text, stale_temporaries, temporary_name

SRC = Path(__file__).resolve().parents[1] / "src" / "mesm"
# Calls that write a file by name; outside mesm/files.py each must write to the temporary that
# `atomic_target` yields (an argument named tmp / self.tmp, or a handle opened on it), or into an
# in-memory `buffer` that an atomic helper then writes.
_WRITERS = re.compile(
    r"\.(write_text|write_bytes)\(|json\.dump\(|os\.replace\(|savefig\(|np\.save\(|save_file\("
    r"|sf\.write\(|torch\.save\(|av\.open\([^)]*mode=\"w\"|open\([^)]*\"[wax]b?\""
)


def test_every_writer_in_src_writes_through_the_atomic_helper():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "files.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#")[0]
            if _WRITERS.search(code) and not re.search(r"\btmp\b|\bfh\b|\bbuffer\b", code):
                offenders.append(f"{path.relative_to(SRC)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_target(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_writes_are_fsynced_and_temporaries_are_per_process(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    atomic_write_text(tmp_path / "a.txt", "x")
    assert len(synced) >= 1  # the file (and, where possible, its folder)
    first, second = temporary_name(tmp_path / "a.txt"), temporary_name(tmp_path / "a.txt")
    assert first != second and f".{os.getpid()}-" in first.name


def test_only_temporaries_of_finished_processes_are_stale(tmp_path):
    live = tmp_path / f".x.{os.getpid()}-0a.tmp"
    dead = tmp_path / ".x.999999999-0b.tmp"
    live.write_text("")
    dead.write_text("")
    assert stale_temporaries(tmp_path) == [dead]


def test_a_folder_is_not_overwritten(tmp_path):
    with pytest.raises(OutputPathError), atomic_target(tmp_path):
        pass


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("Très bien\n".encode(), "utf-8"),
        (b"\xef\xbb\xbf" + "Très bien\n".encode(), "utf-8-sig"),
        (b"\xff\xfe" + "Très bien\n".encode("utf-16-le"), "utf-16-le"),
        (b"\xfe\xff" + "Très bien\n".encode("utf-16-be"), "utf-16-be"),
        (b"\xff\xfe\x00\x00" + "Très bien\n".encode("utf-32-le"), "utf-32-le"),
        ("Très bien\n".encode("cp1252"), "cp1252"),
    ],
)
def test_user_text_is_decoded_in_the_encoding_it_was_saved_in(data, encoding):
    from mesm.files import decode_text

    text = decode_text(data, "t.txt")
    assert text == "Très bien\n" and text.encoding == encoding


def test_undecodable_user_text_names_the_file_line_and_encodings():
    from mesm.errors import TextEncodingError
    from mesm.files import decode_text

    with pytest.raises(TextEncodingError, match=r"^t\.txt:2: not UTF-8, UTF-16 or cp1252 "):
        decode_text(b"ok\n\x81\n", "t.txt")
    with pytest.raises(TextEncodingError, match=r"^t\.txt:2: not UTF-8 \(invalid"):
        decode_text(b"ok\n\xe9\n", "t.txt", fallback=False)  # cp1252 would read it
    with pytest.raises(TextEncodingError, match="UTF-16 without a byte-order mark"):
        decode_text("hello".encode("utf-16-le"), "t.txt")
