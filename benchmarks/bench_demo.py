"""Runs `mesm demo` and writes what it printed (the test tables, FLOPs, face rate) with its
time and folder size, stamped; optionally the size of a demo folder made by an older commit.

The table's excerpt is the demo's own output, cut to its results; nothing is typed by hand.
A ``--before`` folder is measured as it lies on disk now; its commit is read from the tree that
made it (``--before-tree``), so the table says which commit each size belongs to.

Example:
    python benchmarks/bench_demo.py --out /tmp/mesm-demo --table docs/benchmarks/demo.md \\
        --before /tmp/old-demo --before-tree /tmp/old-tree
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import commit, stamp, tree_commit, write_atomic

ROOT = Path(__file__).resolve().parent.parent


def sizes(folder: Path) -> dict[str, int]:
    """Bytes under `folder`: Lightning checkpoints, the rest of the runs, the data, the rest."""
    parts = {"Lightning .ckpt files": 0, "runs (models, logs)": 0, "data (clips, cache)": 0}
    parts["other (video, figures, report)"] = 0
    for f in folder.rglob("*"):
        if not f.is_file() or f.is_symlink():
            continue
        top = f.relative_to(folder).parts[0]
        if f.suffix == ".ckpt":
            key = "Lightning .ckpt files"
        elif top == "runs":
            key = "runs (models, logs)"
        elif top == "data":
            key = "data (clips, cache)"
        else:
            key = "other (video, figures, report)"
        parts[key] += f.stat().st_size
    return parts


def excerpt(printed: str) -> str:
    """The demo's results as it printed them: from the preprocessing summary to the FLOPs ratio,
    then the facial-region lines and the two-person video's line."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cache "))
    end = next(i for i, line in enumerate(lines) if line.startswith("MESM / FE2E"))
    later = [line for line in lines[end + 1 :] if line.startswith(("MESM layer", "two people"))]
    return "\n".join([*lines[start : end + 1], *later])


def size_table(columns: dict[str, dict[str, int]]) -> str:
    names = list(columns)
    rows = ["| part | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    keys = list(next(iter(columns.values())))
    for key in [*keys, "total"]:
        cells = []
        for name in names:
            value = sum(columns[name].values()) if key == "total" else columns[name][key]
            cells.append(f"{value / 1e6:.0f} MB")
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the demo folder to create")
    parser.add_argument("--table", help="write the stamped markdown here")
    parser.add_argument("--before", help="a demo folder an older commit made, to compare sizes")
    parser.add_argument("--before-tree", help="the source tree (git) that made --before")
    args = parser.parse_args(argv)
    if args.before and not args.before_tree:
        parser.error("--before needs --before-tree (the commit that made it is read from there)")
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} exists: the demo writes a new folder")
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "mesm", "demo", "--out", str(out), "--no-progress"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"mesm demo failed ({run.returncode}):\n{run.stderr[-3000:]}")
    here = f"this commit ({commit()})"
    columns = {here: sizes(out)}
    if args.before:
        old = tree_commit(args.before_tree)
        columns = {f"before ({old}, folder made earlier, measured now)": sizes(Path(args.before))}
        columns[here] = sizes(out)
    text = (
        stamp(f"`mesm demo --out DIR` took {seconds:.0f} s (wall-clock, whole process)")
        + "\n\nWhat the demo printed (its results; the progress and file lines left out):\n\n"
        + "```text\n"
        + excerpt(run.stdout)
        + "\n```\n\nThe demo folder's size:\n\n"
        + size_table(columns)
        + "\n"
    )
    print(text)
    if args.table:
        write_atomic(args.table, text)


if __name__ == "__main__":
    main()
