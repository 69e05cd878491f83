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
        help="attention maps of a MESM checkpoint; with --regions, attention per facial region",
        description="For each sparse layer: the attention heat-map and the kept positions over "
        "every face frame and mel chunk of a clip (or of an utterance of a prepared dataset with "
        "--utterance), as PNGs, plus overview.png and attention.json (with each layer's share of "
        "attention per facial region and mel band). With --regions --data DATASET: over a "
        "whole split, the share of attention mass and of kept sites in each facial region "
        "(eyes, brows, nose, mouth, cheeks, jaw, rest: from the five MTCNN landmarks) and mel "
        "band, per emotion (true and predicted), with bootstrap 95%% intervals, enrichment "
        "over the area, IoU and pointing game against each emotion's FACS regions and a "
        "permutation test; FE2E (or MESM with --saliency) through input x gradient saliency. "
        "Writes regions.csv, regions.json, enrichment.png and region_masks.png.",
    )
    ex.add_argument(
        "clip", nargs="?", help="a video file, or a prepared dataset folder with --utterance"
    )
    add_checkpoint(ex)
    ex.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    add_transcript_options(ex)
    ex.add_argument("--audio", metavar="WAV", help="separate audio (default: the clip's track)")
    ex.add_argument("--utterance", metavar="ID", help="utterance id when CLIP is a dataset")
    regions = ex.add_argument_group("a whole split, per facial region (--regions)")
    regions.add_argument(
        "--regions",
        action="store_true",
        help="attention and kept sites per facial region and mel band over a split of --data",
    )
    add_dataset(regions, option=True, required=False)
    add_split(regions)
    regions.add_argument(
        "--saliency",
        action="store_true",
        help="input x gradient saliency instead of MESM's attention (FE2E always uses it)",
    )
    regions.add_argument(
        "--bootstrap",
        type=positive_int,
        default=1000,
        metavar="N",
        help="bootstrap resamples per 95%% interval (default: 1000)",
    )
    regions.add_argument(
        "--permutations",
        type=positive_int,
        default=1000,
        metavar="N",
        help="label shuffles per permutation test (default: 1000)",
    )
    regions.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: 0)")
    regions.add_argument(
        "--speech",
        action="store_true",
        help="also split the audio maps into speech and non-speech mel frames (decodes each "
        "utterance's audio again for the voice-activity detector: slower)",
    )
    add_batch_size(regions)
    add_p(ex)
    add_precision(ex)
    add_json(ex)
    declare_out(
        ex,
        writes=(
            "overview.png",
            "attention.json",
            "regions.csv",
            "regions.json",
            "enrichment.png",
            "region_masks.png",
        ),
    )


def _cmd_explain(args: argparse.Namespace) -> int:
    if args.regions:
        return _explain_regions(args)
    if args.clip is None:
        raise UsageError("explain needs a CLIP (or --regions --data DATASET for a whole split)")
    if args.data is not None:
        raise UsageError("--data is for --regions (a clip or --utterance explains one utterance)")
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
    _print_clip_regions(result.get("regions") or {})
    if args.json:
        write_json(args.json, result)
    return 0


def _print_clip_regions(regions: dict) -> None:
    for layer in regions.get("visual", []):
        shares = ", ".join(
            f"{name} {v['kept']:.0%}"
            for name, v in layer["shares"].items()
            if v["kept"] is not None
        )
        if shares:
            print(f"visual layer {layer['layer']}, kept sites per region: {shares}")
        if layer["excluded"]:
            print(f"  {layer['excluded']} frame(s) without a found face excluded")


def _explain_regions(args: argparse.Namespace) -> int:
    if args.data is None:
        raise UsageError("--regions needs --data DATASET (a prepared dataset folder)")
    if args.clip is not None or args.utterance is not None:
        raise UsageError("--regions reads a whole split of --data: give no CLIP or --utterance")
    from mesm.analysis.region_report import region_report

    report = region_report(
        args.checkpoint,
        args.data,
        args.split,
        args.out,
        source="saliency" if args.saliency else "auto",
        p=args.p,
        batch_size=args.batch_size,
        bootstrap=args.bootstrap,
        permutations=args.permutations,
        seed=args.seed,
        precision=precision(args),
        speech=args.speech,
    )
    print(_regions_summary(report))
    print("written: " + ", ".join(str(Path(args.out) / f) for f in report["files"].values()))
    if args.json:
        write_json(args.json, report)
    return 0


def _regions_summary(report: dict) -> str:
    frames = report["frames"]
    lines = [
        f"{report['arch'].upper()} {report['source']} over {report['utterances']} utterances "
        f"of split {report['split']}: {frames['used']} face frames used, "
        f"{frames['without_face']} without a found face excluded "
        f"({report['utterances_without_face']} utterance(s) with none)",
    ]
    voice = report.get("speech")
    if voice:
        lines.append(
            f"voice activity (Silero VAD): {voice['speech_frames']} speech and "
            f"{voice['non_speech_frames']} non-speech mel frames"
            + (
                f"; {len(voice['utterances_without_audio'])} utterance(s) whose audio could not "
                "be read left out of the speech rows"
                if voice["utterances_without_audio"]
                else ""
            )
        )
    for layer, v in report["mouth_brows"].items():
        lines.append(
            f"visual layer {layer}: mouth + brows hold {v['share']:.1%} of kept sites on "
            f"{v['area']:.1%} of the area, enrichment {v['enrichment']:.2f} "
            f"(95% interval {v['lo']:.2f}-{v['hi']:.2f})"
        )
    return "\n".join(lines)


# The subcommands of this group, in the order `mesm --help` lists them.
COMMANDS = (_add_flops, _add_sweep, _add_explain)
