"""One benchmark script run on two source trees, interleaved: an older tree (``--before``) and
this one, each with its own ``src`` and its own copy of the script, alternating which goes first
in each round, on the same machine; the two stamped tables go into one stamped file.

Example:
    git worktree add /tmp/before a952a79
    python benchmarks/bench_before_after.py --before /tmp/before \\
        --out docs/benchmarks/train_step_before_after.md -- bench_train_step.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import commit, stamp, tree_commit, write_atomic

ROOT = Path(__file__).resolve().parent.parent


def run_script(tree: Path, script: str, args: list[str]) -> str:
    """The stamped table `tree`'s copy of benchmarks/`script` writes with `args`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "table.md"
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        command = [sys.executable, str(tree / "benchmarks" / script), *args, "--out", str(out)]
        subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
        return out.read_text().strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the older source tree (a git checkout)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tree")
    parser.add_argument("--out", required=True, help="the stamped markdown to write")
    parser.add_argument("script", help="a script in benchmarks/ that takes --out")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (after --)")
    args = parser.parse_args(argv)
    script_args = [a for a in args.args if a != "--"]
    trees = {
        f"before ({tree_commit(Path(args.before))})": Path(args.before).resolve(),
        f"after ({commit()})": ROOT,
    }
    head = stamp(f"{args.rounds} round(s), the trees alternating which runs first")
    tables: dict[str, list[str]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for name in order:
            tables[name].append(run_script(trees[name], args.script, script_args))
    parts = [head, f"`{args.script} {' '.join(script_args)}`, each tree's own copy and `src`:"]
    for name, runs in tables.items():
        for i, table in enumerate(runs, 1):
            parts += [f"**{name}**, round {i}:", table]
    text = "\n\n".join(parts) + "\n"
    print(text)
    write_atomic(args.out, text)


if __name__ == "__main__":
    main()
