"""How long the `mesm` command takes to answer: `--help`, every `CMD --help`, `--version`, and
`mesm predict` on one demo clip, cold and warm, for this tree and optionally an older one.

"Cold" is a command's first run after the operating system's page cache was dropped (where this
process may; the stamp says whether it was): every file is read from disk again, as after a
reboot, with the bytecode caches a normal installation has (pip compiles the installed packages;
each tree's own ``__pycache__`` is written by an untimed run first). "Warm" is the median of the
runs after it. ``PYTHONDONTWRITEBYTECODE`` is removed from the commands' environment, since
without bytecode every run compiles every module again (seconds of torch alone), which no
user's machine does. Each tree is run as ``python -m mesm`` with its ``src`` first on the path,
the trees' runs interleaved so that both see the same machine.

Example:
    python benchmarks/bench_cli_latency.py --demo mesm-demo --before /tmp/old-tree \\
        --out docs/benchmarks/cli_latency.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import commit, stamp, tree_commit, write_atomic

ROOT = Path(__file__).resolve().parent.parent
HELP_LIMIT_S, PREDICT_LIMIT_S = 0.5, 4.0


def subcommands(tree: Path) -> list[str]:
    """The subcommands the tree's parser defines."""
    code = (
        "from mesm.cli import build_parser; p = build_parser(); "
        "print(' '.join(p._subparsers._group_actions[0].choices))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(tree), capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _env(tree: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def _drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _time(tree: Path, args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mesm", *args],
        env=_env(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - started


def measure(trees: dict[str, Path], cases: dict[str, list[str]], warm_runs: int) -> dict:
    """{(tree, case): (cold seconds, [warm seconds])}, runs interleaved across trees."""
    for tree in trees.values():
        for args in cases.values():
            _time(tree, args)  # untimed: writes the tree's own bytecode, as a first use would
    results: dict[tuple[str, str], tuple[float, list[float]]] = {}
    dropped = True
    for case, args in cases.items():
        for name, tree in trees.items():
            dropped &= _drop_page_cache()
            results[name, case] = (_time(tree, args), [])
        for _ in range(warm_runs):
            for name, tree in trees.items():
                results[name, case][1].append(_time(tree, args))
    return {"results": results, "page_cache_dropped": dropped}


def table(trees: dict[str, Path], cases: dict[str, list[str]], measured: dict) -> str:
    rows = [
        "| command | tree | cold s | warm s (median) | goal | goal met (warm) |",
        "|---|---|---|---|---|---|",
    ]
    helps = [c for c in cases if c.endswith("--help") and c != "mesm --help"]
    for case in (c for c in cases if c not in helps):  # the subcommands' help: summarised below
        for name in trees:
            cold, warm = measured["results"][name, case]
            limit = PREDICT_LIMIT_S if case.startswith("mesm predict") else HELP_LIMIT_S
            w = statistics.median(warm)
            met = "yes" if w <= limit else "**no**"
            rows.append(f"| `{case}` | {name} | {cold:.2f} | {w:.2f} | <= {limit} | {met} |")
    for name in trees:
        if not helps:
            break
        warm = [statistics.median(measured["results"][name, c][1]) for c in helps]
        cold = [measured["results"][name, c][0] for c in helps]
        met = "yes" if max(warm) <= HELP_LIMIT_S else "**no**"
        rows.append(
            f"| every `mesm CMD --help` ({len(helps)} commands), slowest | {name} | "
            f"{max(cold):.2f} | {max(warm):.2f} | <= {HELP_LIMIT_S} | {met} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", required=True, help="a finished `mesm demo` folder")
    parser.add_argument("--before", help="an older source tree to compare (its src/ is used)")
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--out", help="write the stamped table here (markdown)")
    args = parser.parse_args(argv)
    demo = Path(args.demo)
    checkpoint = demo / "runs" / "mesm" / "best.safetensors"
    clip = demo / "data" / "clips" / "demo0000.mp4"
    for path in (checkpoint, clip):
        if not path.is_file():
            parser.error(f"{path} does not exist (run `mesm demo --out {demo}` first)")
    trees = {"this commit": ROOT}
    if args.before:
        before = Path(args.before).resolve()
        trees = {f"before ({tree_commit(before)})": before, f"after ({commit()})": ROOT}
    cases = {"mesm --help": ["--help"], "mesm --version": ["--version"]}
    for name in subcommands(ROOT):
        cases[f"mesm {name} --help"] = [name, "--help"]
    predict = ["predict", str(clip), "--checkpoint", str(checkpoint), "--text", "I am so tired"]
    cases["mesm predict CLIP (MESM, demo)"] = predict
    measured = measure(trees, cases, args.warm_runs)
    cache = (
        "page cache dropped before each cold run"
        if measured["page_cache_dropped"]
        else ("page cache NOT dropped (no permission)")
    )
    text = (
        stamp(f"{cache}; warm = median of {args.warm_runs} runs; wall-clock of the whole process")
        + "\n\n"
        + table(trees, cases, measured)
    )
    print(text)
    if args.out:
        write_atomic(args.out, text)


if __name__ == "__main__":
    main()
