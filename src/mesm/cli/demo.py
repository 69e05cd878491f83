"""`mesm demo`: the whole pipeline on a synthetic corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from mesm.cli.common import (
    add_json,
    add_no_progress,
    add_precision,
    command,
    declare_out,
    precision,
    write_json,
)


def _add_demo(sub) -> None:
    demo = command(
        sub,
        "demo",
        _cmd_demo,
        help="synthetic corpus → prepare → train FE2E and MESM → test tables and FLOPs",
        description="Writes a small synthetic corpus (drawn faces, speech-like audio, "
        "transcripts; no single modality suffices) in a real dataset's format, preprocesses it "
        "through the real pipeline, trains FE2E and MESM (tiny preset, offline MiniLM text "
        "encoder) and prints their per-emotion test tables and feature-extraction FLOPs. "
        "Writes DIR/report.json.",
    )
    demo.add_argument("--out", default="mesm-demo", metavar="DIR", help="output folder")
    demo.add_argument("--quick", action="store_true", help="smaller corpus, fewer epochs")
    demo.add_argument("--seed", type=int, default=0)
    add_no_progress(demo)
    add_precision(demo)
    add_json(demo)
    declare_out(demo, existing="command")  # refused when it holds a demo run


def _cmd_demo(args: argparse.Namespace) -> int:
    from mesm.demo.pipeline import run_demo
    from mesm.evaluation import format_table

    report = run_demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        precision=precision(args),
    )
    print(f"\n{report['preprocess']['summary']}")
    for name, result in report["models"].items():
        test = result["test"]
        title = f"{name} on the test split ({test['num_samples']} clips)"
        print(f"\n{format_table(test, title)}")
        gf = result["gflops_per_utterance"]
        print(
            f"top-1 accuracy {test['top1_accuracy']:.1%} "
            f"(chance {1 / len(test['per_emotion']):.0%})"
            f"; feature extraction {gf['total']:.4f} GFLOPs/utterance (visual {gf['v']:.4f}, "
            f"audio {gf['a']:.4f}"
            + (f", + attention {gf['attention']:.4f})" if gf["attention"] else ")")
        )
    print(f"\nMESM / FE2E feature-extraction FLOPs: {report['flops_ratio']:.3f}")
    maps = report["attention_maps"]
    print(f"MESM attention maps of test clip {maps['utterance']}: {maps['overview']}")
    regions = report["regions"]
    for layer, v in regions["MESM"]["mouth_brows"].items():
        verdict = "enriched" if regions["mesm_mouth_brows_enriched"][layer] else "not enriched"
        print(
            f"MESM layer {layer}: mouth + brows hold {v['share']:.1%} of kept sites on "
            f"{v['area']:.1%} of the face, enrichment {v['enrichment']:.2f} "
            f"(95% interval {v['lo']:.2f}-{v['hi']:.2f}): {verdict}"
        )
    print(f"attention per facial region: {Path(regions['MESM']['folder']).parent}")
    video = report["video"]
    print(f"a longer video for `mesm predict --out`: {video['video']} (cues: {video['subtitles']})")
    two = report["two_person"]
    turns, speaker, largest = two["turns"], two["speaker"], two["largest"]
    print(
        f"two people in turns ({two['video']}), read by {two['model']}: the speaker's face "
        f"chosen in {speaker['speaker_chosen']} of {turns} turns; the timeline's emotion is the "
        f"speaker's "
        f"in {speaker['agree']} of {turns} turns cropping the speaker's face, "
        f"{largest['agree']} cropping the largest; the probabilities differ by "
        f"{two['probability_change']:.3f} on average between the two (timeline: "
        f"{speaker['timeline']})"
    )
    print(f"report: {Path(args.out) / 'report.json'} ({report['seconds']:.0f} s in all)")
    print(f"{args.out}: {report['folder_bytes'] / 1e6:.0f} MB (trained models, data, figures)")
    print(f'MESM on a web page (needs pip install "mesm[app]"):\n{report["serve_command"]}')
    if args.json:
        write_json(args.json, report)
    return 0


# The subcommands of this group, in the order `mesm --help` lists them.
COMMANDS = (_add_demo,)
