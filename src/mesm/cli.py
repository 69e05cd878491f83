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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"mesm {args.command}: error: {err}", file=sys.stderr)
        return 2
