"""The `mesm` command: thin wrappers over library functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    from mesm.demo import forward_demo

    report = forward_demo(preset=args.preset, p=args.p, frames=args.frames, chunks=args.chunks)
    emotions = report["emotions"]
    print(
        f"FE2E vs MESM (p={report['p']}), preset {args.preset!r}, untrained weights shared by both"
    )
    for name, result in report["models"].items():
        print(f"\n{name}: sigmoid probabilities per utterance")
        print("  " + " ".join(f"{e[:8]:>9}" for e in emotions) + "  transcript")
        for probs, text in zip(result["probabilities"], report["transcripts"], strict=True):
            print("  " + " ".join(f"{v:9.3f}" for v in probs) + f"  {text}")
        g = result["gflops_per_utterance"]
        parts = ", ".join(f"{m} {g[m]:.3f}" for m in ("v", "a") if m in g)
        print(f"  feature extraction: {g['total']:.3f} GFLOPs/utterance ({parts})", end="")
        print(f" + attention {g['attention']:.4f}" if g["attention"] else "")
        if result["sites_kept"]:
            kept = ", ".join(f"{k} {v:.0%}" for k, v in result["sites_kept"].items())
            print(f"  sites kept per sparse stage: {kept}")
    print(f"\nMESM / FE2E feature-extraction FLOPs: {report['flops_ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"report written to {args.json}")
    return 0


def _json_safe(value):
    # NaN (e.g. AUC of an emotion absent from the split) is not JSON: write null.
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from mesm.training.config import load_run_config
    from mesm.training.fit import train

    out = Path(args.resume or args.out)
    config_path = args.config
    if args.resume and config_path is None:
        config_path = out / "config.yaml"
    config = load_run_config(config_path, args.set)
    result = train(config, out, resume=bool(args.resume))
    from mesm.evaluation import format_table

    for split in ("valid", "test"):
        report = result.metrics.get(split)
        if report:
            print(format_table(report, f"{split} ({report['num_samples']} utterances)"))
    print(f"model: {result.checkpoint}\nrun folder: {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mesm.evaluation import format_table
    from mesm.training.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(
        args.checkpoint, args.data, args.split, batch_size=args.batch_size, device=args.device
    )
    print(format_table(report, f"{args.split} ({report['num_samples']} utterances)"))
    if args.json:
        Path(args.json).write_text(json.dumps(_json_safe(report), indent=2))
        print(f"report written to {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesm",
        description="End-to-end multimodal emotion recognition: FE2E and the sparse MESM.",
    )
    from mesm import __version__

    parser.add_argument("--version", action="version", version=f"mesm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run FE2E and MESM on generated inputs; print probabilities and FLOPs",
        description="Builds FE2E and MESM with shared (untrained) weights and the offline text "
        "encoder, runs both on two generated utterances and compares feature-extraction FLOPs.",
    )
    demo.add_argument("--preset", default="paper", choices=["paper", "tiny"])
    demo.add_argument("--p", type=float, default=0.7, help="MESM nucleus mass (default 0.7)")
    demo.add_argument("--frames", type=int, default=8, help="face crops per utterance")
    demo.add_argument("--chunks", type=int, default=8, help="mel chunks per utterance")
    demo.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    demo.set_defaults(func=_cmd_demo)

    tr = sub.add_parser(
        "train",
        help="train FE2E or MESM on a prepared dataset",
        description="Trains with validation every epoch (thresholds tuned on valid, average F1 "
        "selects the best epoch), early stopping, best/last checkpoints, CSV and TensorBoard "
        "logs; writes RUN_DIR/best.safetensors for evaluate/predict.",
    )
    tr.add_argument("--config", metavar="CFG.yaml", help="run config (default: built-in defaults)")
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. optim.lr=1e-4",
    )
    where = tr.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="RUN_DIR", help="new run folder")
    where.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "evaluate",
        help="per-emotion metrics of a checkpoint on a dataset split",
        description="Applies the checkpoint's validation-tuned thresholds to a split and prints "
        "accuracy (single-label) or weighted accuracy (multi-label), F1 and AUC per emotion.",
    )
    ev.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .safetensors checkpoint")
    ev.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset folder")
    ev.add_argument("--split", default="test")
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    ev.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"mesm {args.command}: error: {err}", file=sys.stderr)
        return 2
