"""`mesm flops`, `mesm sweep-p`, `mesm explain`: what MESM's sparsity costs and keeps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesm.cli.common import (
    add_batch_size,
    add_checkpoint,
    add_dataset,
    add_json,
    add_p,
    add_precision,
    add_split,
    add_transcript_options,
    command,
    declare_out,
    nucleus_mass,
    positive_int,
    precision,
    transcript,
    write_json,
)
from mesm.errors import UsageError
from mesm.models.config import DEFAULT_P


def _add_flops(sub) -> None:
    fl = command(
        sub,
        "flops",
        _cmd_flops,
        help="feature-extraction FLOPs of MESM vs FE2E (a checkpoint on data, or a preset)",
        description="Counts the visual and audio feature extractors (up to the sequence "
        "transformers): dense ops with torch's FlopCounterMode, sparse convolutions from the "
        "sites processed; the attention layers and the text encoder separately. With "
        "--checkpoint and --data: averaged per utterance over a split, against FE2E with the "
        "same weights. Without: an untrained preset on generated inputs.",
    )
    add_checkpoint(fl, required=False)
    add_dataset(fl, option=True, required=False)
    add_split(fl)
    add_batch_size(fl)
    add_p(fl)
    fl.add_argument("--arch", default="mesm", choices=["fe2e", "mesm"], help="preset mode")
    fl.add_argument("--preset", default="paper", choices=["paper", "tiny"], help="preset mode")
    fl.add_argument(
        "--frames", type=positive_int, default=8, help="faces per utterance (preset mode)"
    )
    fl.add_argument(
        "--chunks", type=positive_int, default=8, help="mel chunks per utterance (preset)"
    )
    add_precision(fl)
    add_json(fl)


def _print_flops(report: dict) -> None:
    for key in ("model", "fe2e"):
        entry = report[key]
        g = entry["gflops_per_utterance"]
        name = entry["arch"].upper() + (f" (p={entry['p']})" if entry.get("p") else "")
        print(
            f"{name:<18} {g['features']:9.4f} GFLOPs/utterance (visual {g['visual']:.4f}, "
            f"audio {g['audio']:.4f}) + attention {g['attention']:.4f}"
        )
    seq = report["model"]["sequence_gflops_per_utterance"]
    parts = ", ".join(f"{k} {v:.4f}" for k, v in seq.items() if k != "total")
    print(f"{'sequence transformers':<18} {seq['total']:9.4f} GFLOPs/utterance ({parts})")
    kept = report["model"].get("sites_kept") or {}
    if kept:
        print("sites kept: " + ", ".join(f"{k} {v:.0%}" for k, v in kept.items()))
    print(
        f"ratio to FE2E: {report['ratio']:.3f} ({report['ratio_with_attention']:.3f} with the "
        f"attention layers); text encoder {report['text_gflops_per_utterance']:.4f} GFLOPs/utt."
    )


def _cmd_flops(args: argparse.Namespace) -> int:
    from mesm.analysis.flops import dataset_flops, preset_flops

    if args.checkpoint:
        if not args.data:
            raise UsageError("--checkpoint needs --data DATASET")
        report = dataset_flops(
            args.checkpoint,
            args.data,
            args.split,
            batch_size=args.batch_size,
            p=args.p,
            precision=precision(args),
        )
        print(f"{report['split']} split of {report['data']}: {report['num_utterances']} utterances")
    else:
        report = preset_flops(
            args.arch,
            args.preset,
            DEFAULT_P if args.p is None else args.p,
            args.frames,
            args.chunks,
            precision=precision(args),
        )
        print(f"untrained {args.preset!r} preset, {args.frames} faces + {args.chunks} mel chunks")
    _print_flops(report)
    from mesm.sparse import engine_info

    # Which engine ran the sparse ops (FLOPs do not depend on it; time does).
    print(engine_info().line(), file=sys.stderr)
    if args.json:
        write_json(args.json, report)
    return 0


def _add_sweep(sub) -> None:
    sw = command(
        sub,
        "sweep-p",
        _cmd_sweep,
        help="accuracy and FLOPs of a MESM checkpoint for several p (the paper's figure)",
        description="For each p: thresholds tuned on the valid split, metrics on --split, "
        "feature-extraction GFLOPs per utterance; writes sweep.json and sweep.png (metrics above,"
        " FLOPs below, FE2E with the same weights as the reference line).",
    )
    add_checkpoint(sw)
    add_dataset(sw, option=True)
    sw.add_argument(
        "--ps",
        type=nucleus_mass,
        nargs="+",
        metavar="P",
        help="the nucleus masses to measure (default: 0.1 0.2 ... 1.0)",
    )
    add_split(sw)
    add_batch_size(sw)
    sw.add_argument("--out", default="sweep", metavar="DIR", help="folder for sweep.json/.png")
    add_precision(sw)
    add_json(sw)
    declare_out(sw, writes=("sweep.json", "sweep.png"))


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mesm.analysis.sweep import sweep_p

    result = sweep_p(
        args.checkpoint,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        out_dir=args.out,
        precision=precision(args),
        **({"ps": args.ps} if args.ps else {}),
    )
    metric = result["metric"]
    print(f"{'p':>5} {metric:>7} {'F1':>7} {'GFLOPs':>9}")
    for point in result["points"]:
        print(
            f"{point['p']:5.2f} {100 * point[metric]:7.1f} {100 * point['f1']:7.1f} "
            f"{point['gflops_per_utterance']:9.4f}"
        )
    fe2e = result["fe2e"]
    print(
        f"{'FE2E':>5} {100 * fe2e[metric]:7.1f} {100 * fe2e['f1']:7.1f} "
        f"{fe2e['gflops_per_utterance']:9.4f}"
    )
    print("written: " + ", ".join(str(f) for f in result["files"].values()))
    if args.json:
        write_json(args.json, result)
    return 0


def _add_explain(sub) -> None:
    ex = command(
        sub,
        "explain",
        _cmd_explain,
        help="attention maps of a MESM checkpoint over each face and mel chunk",
        description="For each sparse layer: the attention heat-map and the kept positions over "
        "every face frame and mel chunk of a clip (or of an utterance of a prepared dataset with "
        "--utterance), as PNGs, plus overview.png and attention.json.",
    )
    ex.add_argument("clip", help="a video file, or a prepared dataset folder with --utterance")
    add_checkpoint(ex)
    ex.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    add_transcript_options(ex)
    ex.add_argument("--audio", metavar="WAV", help="separate audio (default: the clip's track)")
    ex.add_argument("--utterance", metavar="ID", help="utterance id when CLIP is a dataset")
    add_p(ex)
    add_precision(ex)
    add_json(ex)
    declare_out(ex, writes=("overview.png", "attention.json"))


def _cmd_explain(args: argparse.Namespace) -> int:
    from mesm.analysis.attention_maps import explain

    source, model = args.clip, args.checkpoint
    if args.utterance is None:
        from mesm.inference.predict import Predictor

        predictor = Predictor(args.checkpoint)  # loaded once: its model is explained below
        source = predictor.clip_batch(args.clip, transcript(args), audio=args.audio)
        model = predictor.trained
    result = explain(
        model,
        source,
        args.out,
        utterance_id=args.utterance,
        p=args.p,
        precision=precision(args),
    )
    print(f"attention maps written to {args.out} (overview: {Path(args.out) / 'overview.png'})")
    for pathway, entry in result["pathways"].items():
        kept = ", ".join(f"layer {e['layer']} {e['kept_fraction']:.0%}" for e in entry["layers"])
        print(f"{pathway} ({entry['frames']} frames/chunks), sites kept: {kept}")
    if args.json:
        write_json(args.json, result)
    return 0


# The subcommands of this group, in the order `mesm --help` lists them.
COMMANDS = (_add_flops, _add_sweep, _add_explain)
