"""The paper's sequence transformer vs mesm's former "modern" variant, on the demo corpus.

Writes the demo corpus once (`--size full`: 240 clips and 14 epochs, as `mesm demo`; `quick`: 96
clips and 6 epochs, as `mesm demo --quick`), preprocesses it once, then trains FE2E and MESM (the
demo's settings: `tiny` preset, p = 0.7, best epoch by average F1) with each transformer variant
at several seeds, and prints the test metrics as mean ± standard
deviation over the seeds (and min–max), as a markdown table. The variants differ only in the
structure of the sequence transformer; its widths are the `tiny` preset's:

- paper:  post-norm layers, no LayerNorm after the last layer, no positions (the reference's);
- modern: pre-norm layers, a final LayerNorm, sinusoidal positions added to the frames.

The seed seeds the weights and the data order; the corpus is the same for every run.

The working folder is resumable: finished runs are kept in ``results.json`` with the commit they
ran at. A folder made at another commit is refused unless ``--reuse-older`` is given, and then
the table's stamp names the commits its corpus and runs come from. ``--out-table`` writes the
stamped table.

    python benchmarks/bench_transformer_variants.py --out /tmp/variants [--size quick] \
        [--out-table docs/benchmarks/transformer_variants.md]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mesm.data.media.preprocess import preprocess_dataset
from mesm.demo.corpus import write_demo_corpus
from mesm.demo.pipeline import FULL, QUICK, demo_config
from mesm.evaluation import json_safe
from mesm.training.config import RunConfig
from mesm.training.fit import train

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import commit, record_made_at, reuse_origin, stamp, write_atomic

VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"norm_first": False, "final_norm": False, "sequence_positions": "none"},
    "modern": {"norm_first": True, "final_norm": True, "sequence_positions": "sinusoidal"},
}


def _config(arch: str, data: Path, variant: str, seed: int, size: dict) -> RunConfig:
    base = demo_config(arch, data, size["epochs"], size["patience"], seed).to_dict()
    base["model"].update(VARIANTS[variant])
    return RunConfig.from_dict(base)


def _row(results: list[dict[str, Any]]) -> dict[str, tuple[float, float, float, float]]:
    """Per metric: (mean, standard deviation, min, max) over the seeds, in percent."""
    out = {}
    for key in ("acc", "f1", "auc", "top1"):
        values = [100 * r[key] for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = (statistics.mean(values), spread, min(values), max(values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="working folder (corpus, runs, results)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--archs", nargs="+", default=["fe2e", "mesm"])
    parser.add_argument("--size", choices=["full", "quick"], default="full")
    parser.add_argument("--out-table", help="also write the stamped table (markdown) here")
    parser.add_argument(
        "--reuse-older",
        action="store_true",
        help="reuse a corpus and runs made at another commit (named in the stamp)",
    )
    args = parser.parse_args()
    head = stamp()
    size = FULL if args.size == "full" else QUICK
    out = Path(args.out)
    data = out / "data"
    corpus_origin = None
    if (data / "manifest.jsonl").is_file():
        corpus_origin = reuse_origin(out, args.reuse_older)
    else:
        write_demo_corpus(data, size["utterances"], seed=0)
        record_made_at(out)
    preprocess_dataset(data, num_workers=min(2, os.cpu_count() or 1), progress=False)
    results_path = out / "results.json"
    results: dict[str, Any] = (
        json.loads(results_path.read_text()) if results_path.is_file() else {}
    )  # resumable: finished runs are kept
    for arch in args.archs:
        for variant in VARIANTS:
            for seed in args.seeds:
                key = f"{arch}/{variant}/{seed}"
                if key in results:
                    continue
                started = time.perf_counter()
                run = train(
                    _config(arch, data, variant, seed, size),
                    out / "runs" / key.replace("/", "_"),
                    enable_progress_bar=False,
                )
                test = run.metrics["test"]
                results[key] = {
                    "acc": test["average"]["acc"],
                    "f1": test["average"]["f1"],
                    "auc": test["average"]["auc"],
                    "top1": test["top1_accuracy"],
                    "seconds": time.perf_counter() - started,
                    "commit": commit(),
                }
                tmp = results_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(json_safe(results), indent=2))
                os.replace(tmp, results_path)
                print(key, json_safe(results[key]), flush=True)

    used = [f"{a}/{v}/{s}" for a in args.archs for v in VARIANTS for s in args.seeds]
    commits = collections.Counter(results[key].get("commit", "unknown") for key in used)
    facts = [
        f"demo corpus ({size['utterances']} clips, {size['epochs']} epochs), test split",
        f"{len(args.seeds)} seeds; mean ± standard deviation (min–max), in %",
        "runs made at " + ", ".join(f"commit {c} ({n})" for c, n in commits.items()),
    ]
    if corpus_origin is not None:
        facts.append(f"corpus made at commit {corpus_origin}")
    lines = [head[:-1] + "; " + "; ".join(facts) + "_", ""]
    lines.append("| model | transformer | avg Acc | avg F1 | avg AUC | top-1 |")
    lines.append("|---|---|---|---|---|---|")
    for arch in args.archs:
        for variant in VARIANTS:
            runs = [results[f"{arch}/{variant}/{s}"] for s in args.seeds]
            row = _row(runs)
            cells = " | ".join(
                f"{m:.1f} ± {sd:.1f} ({lo:.1f}–{hi:.1f})"
                for m, sd, lo, hi in (row[k] for k in ("acc", "f1", "auc", "top1"))
            )
            lines.append(f"| {arch.upper()} | {variant} | {cells} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out_table:
        write_atomic(args.out_table, text)


if __name__ == "__main__":
    main()
