"""Test metrics of FE2E and MESM in fp32 and bf16 inference, against the seed-to-seed spread.

For each seed, ``mesm demo`` (its corpus and its training are seeded) trains FE2E and MESM in
fp32; each best checkpoint is then evaluated on the demo's test split at every precision asked
for, with its validation-tuned (fp32) thresholds. The table gives every run; the summary compares
the spread over seeds of the fp32 metrics (max - min) with the largest change bf16 inference
makes to a metric of one checkpoint.

A demo folder that already holds ``report.json`` is reused (only the evaluations run again).

Example:
    python benchmarks/bench_precision_accuracy.py --out precision-accuracy --quick --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mesm.demo.pipeline import run_demo
from mesm.inference.evaluate import evaluate_checkpoint

MODELS = ("fe2e", "mesm")


def evaluate_seed(folder: Path, seed: int, quick: bool, precisions: list[str]) -> list[dict]:
    """Trains (unless done) and evaluates one seed: a row per model and precision."""
    if not (folder / "report.json").is_file():
        run_demo(folder, quick=quick, seed=seed, progress=False, precision="32")
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
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        rows += evaluate_seed(Path(args.out) / f"seed{seed}", seed, args.quick, args.precisions)
    metric = rows[0]["metric"]
    keys = (metric, "f1", "auc", "top1") if rows[0]["top1"] is not None else (metric, "f1", "auc")
    print(f"demo test split: {rows[0]['num_samples']} clips; metrics in %, averages over emotions")
    print("\n| seed | model | precision | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for r in rows:
        cells = " | ".join(f"{100 * r[k]:.1f}" for k in keys)
        print(f"| {r['seed']} | {r['model']} | {r['precision']} | {cells} |")
    print()
    print("\n".join(summarise(rows, keys)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
