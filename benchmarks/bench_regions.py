"""Attention per facial region of the demo's models, and what the region analysis costs.

On a demo folder (``mesm demo``; its models are the ones measured): runs
:func:`mesm.analysis.region_report.region_report` on the test split for MESM (its sparse layers'
attention and kept sites) and FE2E (input × gradient saliency), and writes one stamped markdown
file with

* the share of MESM's kept sites on the mouth and brows (where the demo's faces differ between
  emotions) against their share of the face, per layer, with bootstrap 95 % intervals;
* kept-site enrichment per region and true emotion, for every MESM layer and FE2E's saliency;
* IoU and pointing game against each emotion's FACS regions; the permutation tests;
* the time of the region analysis over a 2,000-utterance split against ``mesm evaluate`` on it
  (the split is the demo's utterances repeated: their cache entries are copied under new ids,
  so both commands read the same 2,000 entries; the first, untimed pass warms the page cache).

and the figures (``--figures DIR``): ``region_masks.png`` (the mean test face and its regions),
``regions_mesm_enrichment.png`` and ``regions_fe2e_enrichment.png``.

Example:
    python benchmarks/bench_regions.py --demo /tmp/demo --out docs/benchmarks/regions.md \
        --figures docs
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mesm.analysis.region_report import region_report
from mesm.data.manifest import read_dataset, write_dataset
from mesm.data.media.cache import FeatureCache
from mesm.inference.evaluate import evaluate_checkpoint
from mesm.trained.checkpoint import preprocessing_settings, read_checkpoint_meta

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import reuse_origin, stamp, table, write_atomic

MODELS = ("mesm", "fe2e")


def _ci(value, lo, hi, digits: int = 2) -> str:
    if value is None or lo is None or hi is None:
        return "–"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _p(value: float) -> str:
    return f"{value:.3f}"


def mouth_brows_rows(reports: dict[str, dict]) -> list[list[str]]:
    rows = []
    for name, report in reports.items():
        for layer, v in report["mouth_brows"].items():
            rows.append(
                [
                    f"{name.upper()} ({report['source']})",
                    layer,
                    f"{v['share']:.1%}",
                    f"{v['area']:.1%}",
                    _ci(v["enrichment"], v["lo"], v["hi"]),
                    "**yes**" if (v["lo"] or 0) > 1 else "no",
                ]
            )
    return rows


def enrichment_table(report: dict, layer: str, regions: list[str]) -> list[list[str]]:
    rows = []
    mine = [
        r
        for r in report["rows"]
        if r["pathway"] == "visual" and r["layer"] == layer and r["group_by"] in ("true", "all")
    ]
    for emotion in dict.fromkeys(r["emotion"] for r in mine):
        by = {r["region"]: r for r in mine if r["emotion"] == emotion}
        cells = []
        for g in regions:
            r = by[g]
            cell = _ci(r["kept_enrichment"], r["kept_enrichment_lo"], r["kept_enrichment_hi"])
            cells.append(f"**{cell}**" if r["facs"] else cell)
        rows.append([f"{emotion} ({by[regions[0]]['utterances']})", *cells])
    return rows


def band_table(report: dict, pathway: str = "audio") -> list[list[str]]:
    rows = []
    for r in report["rows"]:
        if r["pathway"] == pathway and r["group_by"] == "all":
            rows.append(
                [
                    r["layer"],
                    r["region"],
                    f"{r['area_share']:.1%}",
                    _ci(r["kept_share"], r["kept_share_lo"], r["kept_share_hi"], 3),
                    _ci(r["kept_enrichment"], r["kept_enrichment_lo"], r["kept_enrichment_hi"]),
                ]
            )
    return rows


def target_rows(reports: dict[str, dict]) -> list[list[str]]:
    rows = []
    for name, report in reports.items():
        for r in report["targets"]:
            if r["group_by"] != "true":
                continue
            rows.append(
                [
                    name.upper(),
                    r["layer"],
                    r["emotion"],
                    ", ".join(r["regions"]),
                    str(r["utterances"]),
                    _ci(r["iou"], r["iou_lo"], r["iou_hi"]),
                    _ci(r["pointing"], r["pointing_lo"], r["pointing_hi"]),
                ]
            )
    return rows


def permutation_rows(reports: dict[str, dict]) -> list[list[str]]:
    rows = []
    for name, report in reports.items():
        perm = [r for r in report["permutation"] if r["pathway"] == "visual"]
        keyed = {(r["layer"], r["region"], r["quantity"]): r for r in perm}
        for layer, region in dict.fromkeys((r["layer"], r["region"]) for r in perm):
            rows.append(
                [
                    name.upper(),
                    layer,
                    region,
                    _p(keyed[(layer, region, "attention")]["p_value"]),
                    _p(keyed[(layer, region, "kept")]["p_value"]),
                ]
            )
    return rows


def repeated_split(demo: Path, checkpoint: Path, count: int, work: Path) -> Path:
    """A dataset of `count` test utterances: the demo's, repeated, their cache entries copied."""
    info, records = read_dataset(demo / "data")
    root = work / f"repeated-{count}"
    shutil.copytree(demo / "data" / "clips", root / "clips", copy_function=_link_or_copy)
    settings = preprocessing_settings(read_checkpoint_meta(checkpoint))
    source = FeatureCache(demo / "data", settings)
    target = FeatureCache(root, settings)
    target.prepare()
    made = []
    for i in range(count):
        record = records[i % len(records)]
        uid = f"r{i:05d}"
        made.append(dataclasses.replace(record, id=uid, split="test"))
        target.save(uid, source.load(record.id), source.metadata(record.id) or {})
    write_dataset(root, info, made)
    return root


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# What is timed against `mesm evaluate`: (model, command-line flags, region_report options).
TIMED = (
    ("mesm", "", {}),
    ("mesm", " --speech", {"speech": True}),
    ("fe2e", "", {}),
)


def timing_rows(demo: Path, count: int, rounds: int) -> list[list[str]]:
    """Wall-clock of `mesm evaluate` and of the region analysis on a `count`-utterance split
    (each model's evaluation and its analyses alternate, the order flipped every round)."""
    rows = []
    with tempfile.TemporaryDirectory(dir=demo) as tmp:
        checkpoints = {m: demo / "runs" / m / "best.safetensors" for m in MODELS}
        data = repeated_split(demo, checkpoints["mesm"], count, Path(tmp))
        for model, checkpoint in checkpoints.items():
            evaluate_checkpoint(checkpoint, data, "test")  # untimed: the page cache is warm after
            mine = [(flags, options) for m, flags, options in TIMED if m == model]
            runs = [("evaluate", {})] + [(flags, options) for flags, options in mine]
            times: dict[str, list[float]] = {what: [] for what, _ in runs}
            for r in range(rounds):
                for what, options in runs if r % 2 == 0 else runs[::-1]:
                    began = time.perf_counter()
                    if what == "evaluate":
                        evaluate_checkpoint(checkpoint, data, "test")
                    else:
                        out = Path(tmp) / f"out-{model}-{r}-{len(what)}"
                        region_report(checkpoint, data, "test", out, **options)
                    times[what].append(time.perf_counter() - began)
            base = statistics.median(times["evaluate"])
            source = "attention" if model == "mesm" else "saliency"
            for flags, _ in mine:
                ours = statistics.median(times[flags])
                rows.append(
                    [
                        model.upper(),
                        str(count),
                        f"{base:.1f}",
                        f"`--regions{flags}` ({source})",
                        f"{ours:.1f}",
                        f"{ours / base:.2f}",
                        "<= 2.00",
                        "yes" if ours <= 2 * base else "**no**",
                    ]
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", required=True, type=Path, help="a `mesm demo` folder")
    parser.add_argument("--out", required=True, help="the markdown file to write")
    parser.add_argument("--figures", type=Path, help="folder for the three PNGs")
    parser.add_argument("--utterances", type=int, default=2000, help="size of the timed split")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs of each command")
    parser.add_argument("--reuse-older", action="store_true", help="see stamp.reuse_origin")
    args = parser.parse_args()
    origin = reuse_origin(args.demo, args.reuse_older)
    reports = {}
    with tempfile.TemporaryDirectory(dir=args.demo) as tmp:
        for model in MODELS:
            reports[model] = region_report(
                args.demo / "runs" / model / "best.safetensors",
                args.demo / "data",
                "test",
                Path(tmp) / model,
                speech=True,
            )
            if args.figures:
                args.figures.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(
                    Path(tmp) / model / "enrichment.png",
                    args.figures / f"regions_{model}_enrichment.png",
                )
        if args.figures:
            shutil.copyfile(
                Path(tmp) / "mesm" / "region_masks.png", args.figures / "region_masks.png"
            )
    timed = timing_rows(args.demo, args.utterances, args.rounds) if args.utterances else []
    extra = "demo models made at " + (origin or "this commit")
    mesm = reports["mesm"]
    regions = mesm["regions"]["names"]
    parts = [
        stamp(
            f"{extra}; test split, {mesm['utterances']} utterances, "
            f"{mesm['frames']['used']} face frames ({mesm['frames']['without_face']} without a "
            f"found face, excluded); {mesm['bootstrap']} bootstrap resamples, "
            f"{mesm['permutations']} permutations, seed {mesm['seed']}"
        ),
        "",
        "**Mouth and brows together** (where the demo's faces differ between emotions): share of "
        "the kept sites, share of the face's area, enrichment (share / area) with its 95 % "
        "interval; enriched = the whole interval above 1.",
        "",
        table(
            "",
            ["model", "layer", "kept sites", "area", "enrichment [95 % interval]", "enriched"],
            mouth_brows_rows(reports),
        ).lstrip("\n"),
    ]
    for name, report in reports.items():
        layers = sorted({r["layer"] for r in report["rows"] if r["pathway"] == "visual"})
        for layer in layers:
            parts += [
                f"**{name.upper()} ({report['source']}), layer {layer}: kept-site enrichment "
                "per region** (rows: all utterances, then by true emotion, utterances in "
                "brackets; bold: the emotion's FACS regions)",
                "",
                table("", ["emotion", *regions], enrichment_table(report, layer, regions)).lstrip(
                    "\n"
                ),
            ]
    parts += [
        "**MESM, mel bands** (all test utterances): share of the area, share of kept sites and "
        "enrichment, with 95 % intervals",
        "",
        table("", ["layer", "band", "area", "kept sites", "enrichment"], band_table(mesm)).lstrip(
            "\n"
        ),
        "**MESM, speech and non-speech mel frames** (Silero VAD on each utterance's audio; "
        "padding: the zero-padded end of the last chunk)",
        "",
        table(
            "", ["layer", "frames", "area", "kept sites", "enrichment"], band_table(mesm, "speech")
        ).lstrip("\n"),
        "**Kept sites against each emotion's FACS regions** (by true emotion): soft IoU and the "
        "pointing game (the most attended site inside the regions), with 95 % intervals",
        "",
        table(
            "",
            ["model", "layer", "emotion", "FACS regions", "utterances", "IoU", "pointing"],
            target_rows(reports),
        ).lstrip("\n"),
        "**Permutation tests** (do the region shares differ between emotions more than with "
        "shuffled labels? p-values)",
        "",
        table(
            "", ["model", "layer", "region", "p (attention)", "p (kept)"], permutation_rows(reports)
        ).lstrip("\n"),
    ]
    if timed:
        parts += [
            f"**Time over a {args.utterances}-utterance split** (wall-clock seconds, median of "
            f"{args.rounds}; the region analysis includes {mesm['bootstrap']} bootstrap "
            f"resamples and {mesm['permutations']} permutations, and writes its CSV, JSON and "
            "figures; `--speech` also decodes every utterance's audio for the voice-activity "
            "detector)",
            "",
            table(
                "",
                [
                    "model",
                    "utterances",
                    "`mesm evaluate` s",
                    "`mesm explain`",
                    "s",
                    "ratio",
                    "goal",
                    "met",
                ],
                timed,
            ).lstrip("\n"),
        ]
    write_atomic(args.out, "\n".join(parts))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
