"""Test helpers: tiny models and random batches built on the fly (nothing is downloaded)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
import torch

from ci_env import in_ci
from mesm.models import TINY_TEXT, create_model


def make_batch(
    face_lengths: list[int],
    spec_lengths: list[int],
    text_lengths: list[int] | None = None,
    num_classes: int = 6,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A random batch in the Batch contract of docs/architecture.md (lengths may be 0)."""
    g = torch.Generator().manual_seed(seed)
    batch = len(face_lengths)
    text_lengths = text_lengths or [5] * batch
    width = max(text_lengths)
    ids = torch.randint(1000, 2000, (batch, width), generator=g)
    mask = torch.arange(width)[None, :] < torch.tensor(text_lengths)[:, None]
    ids[:, 0] = 101  # [CLS]
    ids = ids.masked_fill(~mask, 0)
    return {
        "text_ids": ids,
        "text_mask": mask,
        "faces": torch.randn(sum(face_lengths), 3, 48, 48, generator=g),
        "face_lengths": torch.tensor(face_lengths, dtype=torch.long),
        "specs": torch.randn(sum(spec_lengths), 1, 128, 32, generator=g).abs(),
        "spec_lengths": torch.tensor(spec_lengths, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch, num_classes), generator=g).float(),
    }


def tiny_model(arch: str = "fe2e", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(arch, preset="tiny", **{**TINY_TEXT, **overrides})


def model_inputs(batch: dict) -> dict:
    keys = ("text_ids", "text_mask", "faces", "face_lengths", "specs", "spec_lengths")
    return {k: batch[k] for k in keys}


# `--set` overrides that give a run config the tiny random text encoder (no download).
TINY_TEXT_SETS = [
    "model.text_pretrained=false",
    "model.text_overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
    "intermediate_size: 64}",
]


# CI runs scripts/install.sh first, which installs every extra and system package a test needs:
# there a missing one is a broken install, not a reason to skip.
IN_CI = in_ci()


def missing(
    reason: str, in_ci: str = "but CI installs it (scripts/install.sh): the install is broken"
) -> NoReturn:
    """A test cannot run here (a system package or extra is missing, ...): skipped on a
    developer's machine, failed in CI (``CI=true``), where it must run; `in_ci` says why."""
    if IN_CI:
        pytest.fail(f"{reason}, {in_ci}")
    pytest.skip(reason)


def require_module(name: str, reason: str) -> ModuleType:
    """``pytest.importorskip`` that fails in CI (see :func:`missing`)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(reason)


def unwritable_folder(tmp_path) -> Path:
    """A real folder where creating a file fails, without mocking the file system.

    A folder whose write permission is removed stops a normal user but not root (who ignores
    file modes, as in our containers); there `/sys` (sysfs: root may not create files in it) is
    used. Each candidate is tried before it is returned; with none, the test is skipped (failed
    in CI, see :func:`missing`).
    """
    candidates = []
    if os.geteuid() != 0:
        folder = Path(tmp_path) / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        candidates.append(folder)
    candidates.append(Path("/sys"))
    for folder in candidates:
        probe = folder / ".mesm-write-probe"
        try:
            os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError:
            return folder
        os.unlink(probe)
    missing("no folder here refuses to be written (not even /sys)")


def group_processes(pgid: int) -> set[int]:
    """The running (not zombie) processes of process group `pgid`, read from /proc."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.add(int(name))
    return found


@dataclass
class Signalled:
    """A real `python -m mesm ...` that was sent a signal mid-run (see `signal_midway`).

    Attributes:
        returncode: its exit status.
        stdout, stderr: what it printed.
        before_signal: what it had printed (stdout, then stderr) when the signal was sent.
        seen: the processes of its group while it ran (itself, its workers, ...).
        left: those still running `settle` s after it exited (orphans; should be empty).
    """

    returncode: int
    stdout: str
    stderr: str
    before_signal: str
    seen: set[int]
    left: set[int]


def signal_midway(
    args: list[str],
    ready: Callable[[str], bool],
    signum: int,
    *,
    cwd: Path,
    timeout: float = 300,
    settle: float = 10,
    env: dict[str, str] | None = None,
) -> Signalled:
    """Runs ``python -m mesm ARGS`` in its own process group, sends it `signum` as soon as
    ``ready(what it printed so far: stdout, then stderr)`` holds (fails the test if it ends
    first; `env` adds to the environment), waits for it to exit and
    then (up to `settle` seconds) for every process of its group to end."""
    if not os.path.isdir("/proc/self"):
        missing("reads /proc to find the processes", "and CI runs on Linux")
    out_path, err_path = cwd / ".mesm-stdout", cwd / ".mesm-stderr"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mesm", *args],
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own group: its workers are found by the group id
        )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + timeout
        while not ready(printed := out_path.read_text() + err_path.read_text()):
            seen |= group_processes(proc.pid)
            if proc.poll() is not None:
                pytest.fail(
                    f"mesm {args[0]} ended before it could be stopped: {err_path.read_text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"mesm {args[0]} never got ready: {err_path.read_text()[-2000:]}")
            time.sleep(0.1)
        seen |= group_processes(proc.pid)
        os.kill(proc.pid, signum)
        proc.wait(timeout=120)
        deadline = time.monotonic() + settle
        while (left := group_processes(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stdout, stderr = out_path.read_text(), err_path.read_text()
    out_path.unlink()
    err_path.unlink()
    return Signalled(proc.returncode, stdout, stderr, printed, seen, left)


def temporaries(folder: Path) -> list[Path]:
    """Temporaries of `mesm.files` (``.NAME.PID-TOKEN.tmp``) anywhere under `folder`."""
    from mesm.files import is_temporary

    return [p for p in Path(folder).rglob(".*.tmp") if is_temporary(p)]


def command_leaves() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """(command words) -> parser of every runnable `mesm` (sub)subcommand."""
    from mesm.cli import build_parser

    def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path, parser
            return
        for name, child in subs[0].choices.items():
            yield from leaves(child, (*path, name))

    return dict(leaves(build_parser(), ()))
