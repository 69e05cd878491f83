"""Test metrics of FE2E and MESM in fp32 and bf16 inference, against the seed-to-seed spread.

For each seed, ``mesm demo`` (its corpus and its training are seeded) trains FE2E and MESM in
fp32; each best checkpoint is then evaluated on the demo's test split at every precision asked
for, with its validation-tuned (fp32) thresholds. The table gives every run; the summary compares
the spread over seeds of the fp32 metrics (max - min) with the largest change bf16 inference
makes to a metric of one checkpoint.

A demo folder that already holds ``report.json`` is reused (only the evaluations run again) when
its models were trained at the current commit; one trained at another commit is refused unless
``--reuse-older`` is given, and then the table's stamp names the commit each seed's models come
from. ``--out-table`` writes the stamped tables.

Example:
    python benchmarks/bench_precision_accuracy.py --out precision-accuracy --quick --seeds 0 1 2 \
        --out-table docs/benchmarks/precision_accuracy.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mesm.demo.pipeline import run_demo
from mesm.inference.evaluate import evaluate_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import record_made_at, reuse_origin, stamp, write_atomic

MODELS = ("fe2e", "mesm")


def train_seed(folder: Path, seed: int, quick: bool, reuse_older: bool) -> str | None:
    """Trains one seed's models unless `folder` holds them; the commit of reused older ones."""
    if (folder / "report.json").is_file():
        return reuse_origin(folder, reuse_older)
    run_demo(folder, quick=quick, seed=seed, progress=False, precision="32")
    record_made_at(folder)
    return None


def evaluate_seed(folder: Path, seed: int, precisions: list[str]) -> list[dict]:
    """Evaluates one seed's models: a row per model and precision."""
    rows = []
    for model in MODELS:
        checkpoint = folder / "runs" / model / "best.safetensors"
        for precision in precisions:
            report = evaluate_checkpoint(checkpoint, folder / "data", "test", precision=precision)
            metric = report["metric"]
            rows.append(
                {
                    "seed": seed,
                    "model": model.upper(),
                    "precision": report["precision"],
                    "metric": metric,
                    metric: report["average"][metric],
                    "f1": report["average"]["f1"],
                    "auc": report["average"]["auc"],
                    "top1": report.get("top1_accuracy"),
                    "num_samples": report["num_samples"],
                }
            )
    return rows


def summarise(rows: list[dict], keys: tuple[str, ...]) -> list[str]:
    """Per model and metric: seed-to-seed range in fp32 vs the largest |bf16 - fp32| change."""
    lines = ["| model | metric | fp32 over seeds (min–max) | spread | largest bf16 − fp32 change |"]
    lines.append("|---|---|---|---|---|")
    for model in (m.upper() for m in MODELS):
        mine = [r for r in rows if r["model"] == model]
        for key in keys:
            base = {r["seed"]: r[key] for r in mine if r["precision"] == "32-true"}
            low = [r for r in mine if r["precision"] != "32-true"]
            if not base:
                continue
            changes = [r[key] - base[r["seed"]] for r in low]
            largest = max(changes, key=abs) if changes else float("nan")
            lines.append(
                f"| {model} | {key} | {100 * min(base.values()):.1f}–{100 * max(base.values()):.1f}"
                f" | {100 * (max(base.values()) - min(base.values())):.1f} | "
                f"{100 * largest:+.1f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="precision-accuracy", help="one demo folder per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="the quick demo (as the tests)")
    parser.add_argument("--precisions", nargs="+", default=["32", "bf16"])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--out-table", help="also write the stamped tables (markdown) here")
    parser.add_argument(
        "--reuse-older",
        action="store_true",
        help="reuse demo folders trained at another commit (named in the stamp)",
    )
    args = parser.parse_args()
    head = stamp()
    rows, reused = [], []
    for seed in args.seeds:
        folder = Path(args.out) / f"seed{seed}"
        origin = train_seed(folder, seed, args.quick, args.reuse_older)
        if origin is not None:
            reused.append(f"seed {seed}'s models trained at commit {origin}")
        rows += evaluate_seed(folder, seed, args.precisions)
    metric = rows[0]["metric"]
    keys = (metric, "f1", "auc", "top1") if rows[0]["top1"] is not None else (metric, "f1", "auc")
    facts = [
        f"demo{' --quick' if args.quick else ''} test split, {rows[0]['num_samples']} clips",
        "metrics in %, averages over emotions",
        *(reused or ["every model trained by this run or at this commit"]),
    ]
    lines = [head[:-1] + "; " + "; ".join(facts) + "_", ""]
    lines.append("| seed | model | precision | " + " | ".join(keys) + " |")
    lines.append("|---|---|---|" + "---|" * len(keys))
    for r in rows:
        cells = " | ".join(f"{100 * r[k]:.1f}" for k in keys)
        lines.append(f"| {r['seed']} | {r['model']} | {r['precision']} | {cells} |")
    lines += ["", *summarise(rows, keys)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out_table:
        write_atomic(args.out_table, text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
