"""The stamp every benchmark table carries: the command that wrote it, commit, date, CPU model and
flags, threads, torch version and machine load, so that a number is never read without the
conditions it was measured under, nor without the way to measure it again.

A stamp is the first line of a generated table and starts with ``_command: python benchmarks/``;
``tests/test_docs.py`` reads it (the script it names must exist)."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

# The CPU flags that decide which kernels oneDNN and the compiled sparse engine run.
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu() -> tuple[str, list[str]]:
    """(model name, the relevant instruction-set flags present)."""
    name, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return name, [f for f in _FLAGS if f in flags]


def tree_commit(tree: str | os.PathLike) -> str:
    """The short commit a git checkout is at ("unknown" outside one)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def commit() -> str:
    """The commit the benchmark ran at, with "+dirty" when its code (src/, benchmarks/) had
    uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = tree_commit(root)
    try:
        dirty = subprocess.run(
            # The code only: a table another benchmark just rewrote is not a change to what runs.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def command() -> str:
    """The command line that runs this benchmark again, from the repository root."""
    root = Path(__file__).resolve().parent.parent
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(root).as_posix()
    except ValueError:
        shown = script.as_posix()
    return shlex.join(["python", shown, *sys.argv[1:]])


MADE_AT = "made_at_commit.txt"


def record_made_at(folder: Path) -> None:
    """Records in `folder` the commit whose code made what it holds (trained models, a corpus)."""
    write_atomic(str(folder / MADE_AT), commit() + "\n")


def reuse_origin(folder: Path, reuse_older: bool) -> str | None:
    """Whether the results in `folder` may be reused by a benchmark that runs now.

    Returns None when they were made at this commit with clean code (reuse is then the same as
    recomputing), or their commit ("unknown" when not recorded) when they were not and
    `reuse_older` allows it: the caller must then name it in its table's stamp. Exits with a
    message otherwise, so that a table never silently mixes results of two commits.
    """
    record = folder / MADE_AT
    origin = record.read_text().strip() if record.is_file() else "unknown"
    now = commit()
    if origin == now and not now.endswith("+dirty"):
        return None
    if reuse_older:
        return origin
    why = "uncommitted code changes since" if origin == now else f"not at {now}"
    raise SystemExit(
        f"{folder} holds results made at commit {origin}, {why}: remove it to recompute, "
        "or pass --reuse-older to reuse it (its commit is then named in the table's stamp)"
    )


def _load_now() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


_LOAD_AT_START = _load_now()  # read when a benchmark script imports this module, before any work


def load() -> str:
    """The 1-minute load average when the script started, over the core count (about 0 on an
    idle machine; the script's own work is not in it)."""
    if _LOAD_AT_START is None:
        return "unknown"
    return f"{_LOAD_AT_START:.2f} on {os.cpu_count()} cores"


def stamp(extra: str = "") -> str:
    """One markdown line: what ran, where, when and under which load."""
    name, flags = cpu()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"command: {command()}",
        f"commit {commit()}",
        when,
        f"CPU {name} ({' '.join(flags) or 'no AVX2'}), {os.cpu_count()} cores",
        f"{torch.get_num_threads()} threads",
        f"torch {torch.__version__}",
        f"load at start {load()}",
    ]
    return "_" + "; ".join(parts) + (f"; {extra}" if extra else "") + "_"


def table(head: str, columns: list[str], rows: list) -> str:
    """The stamp `head`, then a markdown table of `rows` (sequences of cells)."""
    lines = [head, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same folder (never half a table)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)
