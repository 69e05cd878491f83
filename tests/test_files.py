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
