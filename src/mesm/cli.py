"""The `mesm` command: thin wrappers over library functions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mesm.errors import MesmError
from mesm.files import atomic_write_json, check_output_file


def _workers(args: argparse.Namespace) -> int:
    from mesm.data.workers import cap_workers

    return cap_workers(args.workers, say=True)


def _check_json(args: argparse.Namespace) -> None:
    # Checked before any work, so a bad --json never costs a whole evaluation.
    if args.json:
        check_output_file(args.json)


def _precision(args: argparse.Namespace, device: str = "cpu"):
    """The --precision choice resolved for `device`, after printing what it is."""
    from mesm.inference.precision import resolve_precision

    precision = resolve_precision(args.precision, device)
    print(precision.describe())
    return precision


def _cmd_demo(args: argparse.Namespace) -> int:
    from mesm.demo import run_demo
    from mesm.evaluation import format_table

    report = run_demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        precision=_precision(args),
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
    video = report["video"]
    print(f"a longer video for `mesm predict --out`: {video['video']} (cues: {video['subtitles']})")
    print(f"report: {Path(args.out) / 'report.json'} ({report['seconds']:.0f} s in all)")
    print(f'MESM on a web page (needs pip install "mesm[app]"):\n{report["serve_command"]}')
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from mesm.data.handcrafted.features import FeatureSettings, extract_features

    settings = FeatureSettings(audio_set=args.audio_set, glove=args.glove)
    report = extract_features(
        args.dataset,
        settings,
        num_workers=_workers(args),
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mesm.evaluation.compare import compare_runs

    print(compare_runs(args.runs, split=args.split))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mesm.training.config import load_run_config
    from mesm.training.fit import train

    out = Path(args.resume or args.out)
    config_path = args.config
    if args.resume and config_path is None:
        config_path = out / "config.yaml"
    sets = args.set + ([f"trainer.precision={args.precision}"] if args.precision else [])
    config = load_run_config(config_path, sets)
    result = train(config, out, resume=bool(args.resume))
    from mesm.evaluation import format_table

    for split in ("valid", "test"):
        report = result.metrics.get(split)
        if report:
            print(format_table(report, f"{split} ({report['num_samples']} utterances)"))
    print(f"model: {result.checkpoint}\nrun folder: {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mesm.evaluation import format_table, json_safe
    from mesm.inference.evaluate import evaluate_checkpoint

    _check_json(args)
    report = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        batch_size=args.batch_size,
        device=args.device,
        precision=_precision(args, args.device),
    )
    print(format_table(report, f"{args.split} ({report['num_samples']} utterances)"))
    if args.json:
        atomic_write_json(args.json, json_safe(report))
        print(f"report written to {args.json}")
    return 0


def _transcript(args: argparse.Namespace) -> str:
    from mesm.inference.predict import read_transcript, read_transcript_file

    if args.transcript_file is not None:
        return read_transcript_file(args.transcript_file)
    if args.text is not None:
        return args.text
    return read_transcript(args.transcript)


def _add_transcript_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--text", metavar="TEXT", help="what is said in the clip")
    group.add_argument("--transcript-file", metavar="FILE", help="a UTF-8 file holding it")
    group.add_argument(
        "--transcript",
        metavar="TEXT_OR_FILE",
        help="older form: an existing file is read, a path-like word naming no file is an error",
    )


def _print_prediction(result: dict) -> None:
    info = result["preprocessing"]
    print(
        f"{result['clip']}: {info['frames']} frames ({info['faces_found']} with a detected face, "
        f"the rest centre-cropped), {info['chunks']} mel chunks"
    )
    print(f"{'emotion':<14}{'probability':>12}{'threshold':>11}  present")
    for name, e in result["emotions"].items():
        mark = "yes" if e["present"] else "-"
        print(f"{name:<14}{e['probability']:>12.3f}{e['threshold']:>11.2f}  {mark}")
    if "top" in result:
        print(f"most likely: {result['top']}")


def _cmd_predict(args: argparse.Namespace) -> int:
    from mesm.inference.batch import expand_inputs
    from mesm.inference.predict import Predictor, predict_clip

    _check_json(args)
    text = _transcript(args)
    precision = _precision(args, args.device)
    whole_video = bool(args.out or args.subtitles or args.transcribe)
    if not whole_video and len(args.clip) == 1 and _is_one_clip(Path(args.clip[0])):
        result = predict_clip(
            args.checkpoint,
            args.clip[0],
            text,
            audio=args.audio,
            device=args.device,
            precision=precision,
        )
        _print_prediction(result)
        if args.json:
            atomic_write_json(args.json, result)
            print(f"written to {args.json}")
        if args.csv:
            _write_rows_csv(args.csv, [_clip_row(result)], list(result["emotions"]))
        return 0
    clips = expand_inputs(args.clip)
    if not clips:
        raise ValueError(f"no clips in {' '.join(args.clip)}")
    predictor = Predictor(args.checkpoint, args.device, precision)
    failed: list[tuple[str, str]] = []

    def report_failure(path: object, reason: str) -> None:
        print(f"mesm predict: failed: {path}: {reason}", file=sys.stderr)

    if whole_video:
        rows = _predict_timelines(args, clips, predictor, failed, report_failure)
    else:
        from mesm.inference.batch import predict_clips

        rows, failed = predict_clips(
            predictor,
            clips,
            transcript=text,
            audio=args.audio,
            progress=not args.no_progress,
            on_failure=report_failure,
        )
        for row in rows:
            present = ", ".join(row["present"]) or "-"
            top = f"; most likely {row['top']}" if "top" in row else ""
            print(f"{row['clip']}: present: {present}{top}")
    if args.csv:
        _write_rows_csv(args.csv, rows, predictor.label_names)
    if args.json and not whole_video:
        atomic_write_json(args.json, rows)
        print(f"written to {args.json}")
    done = len(clips) - len(failed)
    print(f"{done} of {len(clips)} input(s) predicted, {len(rows)} row(s)")
    if failed:
        print(f"mesm predict: {len(failed)} of {len(clips)} input(s) failed:", file=sys.stderr)
        for path, reason in failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def _is_one_clip(path: Path) -> bool:
    """A video file or a frame folder (not a manifest, not a folder of videos)."""
    from mesm.inference.batch import MANIFEST_SUFFIXES, VIDEO_SUFFIXES

    if path.is_dir():
        return not any(n.lower().endswith(VIDEO_SUFFIXES) for n in os.listdir(path))
    return path.suffix.lower() not in MANIFEST_SUFFIXES


def _clip_row(result: dict) -> dict:
    info = result["preprocessing"]
    return {
        "clip": result["clip"],
        "source": "clip",
        "text": result["transcript"],
        "frames": info["frames"],
        "faces_found": info["faces_found"],
        "chunks": info["chunks"],
        **{k: result[k] for k in ("emotions", "top") if k in result},
    }


def _write_rows_csv(path: str, rows: list[dict], label_names: list[str]) -> None:
    from mesm.files import atomic_write_bytes
    from mesm.inference.timeline import prediction_rows_csv

    atomic_write_bytes(path, prediction_rows_csv(rows, label_names).encode("utf-8"))
    print(f"{len(rows)} row(s) written to {path}")


def _predict_timelines(args, clips, predictor, failed, report_failure) -> list[dict]:
    """Whole-video mode: a timeline (CSV, JSON, PNG) per video under --out."""
    from mesm.analysis.timeline import write_timeline
    from mesm.data.media.segments import VadSettings
    from mesm.inference.batch import CLIP_ERRORS
    from mesm.inference.timeline import predict_video

    if not args.out:
        raise ValueError("whole-video prediction (--subtitles / --transcribe) needs --out DIR")
    if args.json:
        raise ValueError("--json is for clips; whole videos get DIR/timeline.json (--out DIR)")
    if args.subtitles and args.transcribe:
        raise ValueError("give --subtitles or --transcribe, not both (subtitles carry the text)")
    if args.subtitles and len(clips) != 1:
        raise ValueError(f"--subtitles belongs to one video, got {len(clips)} inputs")
    vad = VadSettings(max_length=args.max_segment, min_silence=args.min_silence)
    transcriber = None
    if args.transcribe:
        from mesm.data.media.transcribe import Transcriber

        transcriber = Transcriber(args.transcribe, args.device)
    out = Path(args.out)
    rows: list[dict] = []
    used: set[str] = set()
    for item in clips:
        folder = out
        if len(clips) > 1:
            name = item.clip.stem
            while name in used:
                name += "_"
            used.add(name)
            folder = out / name
        try:
            timeline = predict_video(
                predictor,
                item.clip,
                subtitles=args.subtitles,
                transcribe=transcriber,
                audio=item.audio or args.audio,
                overlapping_cues=args.overlapping_cues,
                vad=vad,
                progress=not args.no_progress,
            )
        except CLIP_ERRORS as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            failed.append((str(item.clip), reason))
            report_failure(item.clip, reason)
            continue
        for warning in timeline.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        paths = write_timeline(timeline, folder)
        rows.extend(timeline.rows)
        print(f"{item.clip}: {timeline.segmentation.summary()}")
        for note in timeline.segmentation.notes:
            print(f"  {note}")
        print(f"  written: {', '.join(str(p) for p in paths.values())}")
    return rows


def _cmd_prepare(args: argparse.Namespace) -> int:
    from mesm.data import prepare_iemocap, prepare_mosei, prepare_released

    common = {"keep_unlisted": args.keep_unlisted}
    if args.dataset != "released" and not args.out:
        raise ValueError(f"prepare {args.dataset} needs --out DIR")
    if args.dataset == "released":
        report = prepare_released(args.release, args.kind, args.out, **common)
    else:
        prepare = prepare_iemocap if args.dataset == "iemocap" else prepare_mosei
        report = prepare(
            args.release,
            args.out,
            num_workers=_workers(args),
            overwrite=args.overwrite,
            progress=not args.no_progress,
            **common,
        )
    print(report.summary())
    return 0


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from mesm.data import PreprocessSettings, preprocess_dataset

    settings = PreprocessSettings(img_interval_ms=args.img_interval, log_mel=args.log_mel)
    report = preprocess_dataset(
        args.dataset,
        settings,
        num_workers=_workers(args),
        device=args.device,
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0


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

    _check_json(args)
    if args.checkpoint:
        if not args.data:
            raise ValueError("--checkpoint needs --data DATASET")
        report = dataset_flops(
            args.checkpoint, args.data, args.split, p=args.p, precision=_precision(args)
        )
        print(f"{report['split']} split of {report['data']}: {report['num_utterances']} utterances")
    else:
        p = 0.7 if args.p is None else args.p
        report = preset_flops(
            args.arch, args.preset, p, args.frames, args.chunks, precision=_precision(args)
        )
        print(f"untrained {args.preset!r} preset, {args.frames} faces + {args.chunks} mel chunks")
    _print_flops(report)
    if args.json:
        atomic_write_json(args.json, report)
        print(f"written to {args.json}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mesm.analysis.sweep import sweep_p

    ps = tuple(float(v) for v in args.p.split(","))
    result = sweep_p(
        args.checkpoint, args.data, ps, args.split, out_dir=args.out, precision=_precision(args)
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
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from mesm.analysis.attention_maps import explain

    source, model = args.clip, args.checkpoint
    if args.utterance is None:
        from mesm.inference.predict import Predictor

        predictor = Predictor(args.checkpoint)  # loaded once: its model is explained below
        source = predictor.clip_batch(args.clip, _transcript(args), audio=args.audio)
        model = predictor.trained
    result = explain(
        model,
        source,
        args.out,
        utterance_id=args.utterance,
        p=args.p,
        precision=_precision(args),
    )
    print(f"attention maps written to {args.out} (overview: {Path(args.out) / 'overview.png'})")
    for pathway, entry in result["pathways"].items():
        kept = ", ".join(f"layer {e['layer']} {e['kept_fraction']:.0%}" for e in entry["layers"])
        print(f"{pathway} ({entry['frames']} frames/chunks), sites kept: {kept}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from mesm.app.page import serve

    serve(
        args.checkpoint,
        host=args.host,
        port=args.port,
        examples=args.examples,
        device=args.device,
        precision=_precision(args, args.device),
        share=args.share,
    )
    return 0


def _add_precision(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    from mesm.inference.precision import PRECISIONS

    parser.add_argument(
        "--precision",
        default=default,
        metavar="{" + ",".join(PRECISIONS) + "}",
        help="numeric precision: 32 (float32), bf16 (bfloat16 autocast, weights float32), "
        "16-mixed (float16, CUDA); auto = bf16 on a CPU with bf16 matrix units "
        "(avx512_bf16/amx_bf16) or a GPU that supports it, fp16 on other GPUs, else 32"
        + (" (default)" if default == "auto" else "; default: the config's trainer.precision"),
    )


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
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_precision(demo)
    demo.set_defaults(func=_cmd_demo)

    prep = sub.add_parser(
        "prepare",
        help="reorganise an official release into a dataset folder (manifest + clips + splits)",
        description="iemocap/mosei: cut every utterance from the official release (IEMOCAP: the "
        "speaker's half of the dialog video, its transcript and label; CMU-MOSEI: segments with "
        "emotions present when the annotators' sum > 0) and apply the paper's split lists "
        "(Dai et al. 2021, CC BY 4.0). released: a manifest for the authors' processed data "
        "(meta.pkl read by a restricted unpickler).",
    )
    prep.add_argument("dataset", choices=["iemocap", "mosei", "released"])
    prep.add_argument("--release", required=True, metavar="DIR", help="the release folder")
    prep.add_argument("--out", metavar="DIR", help="dataset folder to write")
    prep.add_argument(
        "--kind", choices=["iemocap", "mosei"], default="iemocap", help="for `released`"
    )
    prep.add_argument("--keep-unlisted", action="store_true", help="keep ids in no split list")
    prep.add_argument("--workers", type=int, default=0, help="parallel processes for cutting")
    prep.add_argument("--overwrite", action="store_true", help="cut clips again")
    prep.add_argument("--no-progress", action="store_true")
    prep.set_defaults(func=_cmd_prepare)

    pre = sub.add_parser(
        "preprocess",
        help="compute face crops and mel chunks once into the dataset's feature cache",
        description="Decodes every clip, samples a frame every --img-interval ms, crops faces "
        "with MTCNN (centre crop when none is found: counted and reported), computes the mel "
        "chunks and stores them in a cache keyed by these settings. Resumable: finished entries "
        "are kept.",
    )
    pre.add_argument("dataset", metavar="DATASET", help="a prepared dataset folder")
    pre.add_argument("--img-interval", type=float, default=500, help="ms between frames")
    pre.add_argument("--log-mel", action="store_true", help="store log-mel instead of power mel")
    pre.add_argument("--workers", type=int, default=0, help="parallel processes")
    pre.add_argument("--device", default="cpu", help="where MTCNN runs")
    pre.add_argument("--split", help="only this split")
    pre.add_argument("--overwrite", action="store_true", help="recompute cached entries")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(func=_cmd_preprocess)

    fe = sub.add_parser(
        "features",
        help="hand-crafted feature sequences for the two-phase baselines",
        description="Extracts fixed features per utterance into the dataset's cache: openSMILE "
        "low-level descriptors (eGeMAPS, or ComParE_2016) for audio; per sampled frame the MTCNN "
        "box, landmarks and a HOG descriptor of the face for video; static word vectors (the "
        "text model's input embeddings, or a GloVe file) for text. Used by the lf_lstm, "
        "lf_transformer, mult and emoembs models.",
    )
    fe.add_argument("dataset", metavar="DATASET", help="a prepared dataset folder")
    fe.add_argument("--audio-set", default="egemaps", choices=["egemaps", "compare"])
    fe.add_argument("--glove", metavar="FILE", help="GloVe text file for the word vectors")
    fe.add_argument("--workers", type=int, default=0)
    fe.add_argument("--split", help="only this split")
    fe.add_argument("--overwrite", action="store_true")
    fe.add_argument("--no-progress", action="store_true")
    fe.set_defaults(func=_cmd_features)

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
    _add_precision(tr, default=None)
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
    _add_precision(ev)
    ev.set_defaults(func=_cmd_evaluate)

    co = sub.add_parser(
        "compare",
        help="one table of several runs in the paper's layout",
        description="Rows: the runs' models; columns: each emotion's Acc/F1 (or WAcc/F1) and the "
        "averages, from each RUN_DIR's metrics.json and config.yaml.",
    )
    co.add_argument("runs", nargs="+", metavar="RUN_DIR")
    co.add_argument("--split", default="test", choices=["valid", "test"])
    co.set_defaults(func=_cmd_compare)

    pr = sub.add_parser(
        "predict",
        help="per-emotion probabilities for clips, or an emotion timeline of whole videos",
        description="Runs a checkpoint on clips: frames every img_interval ms, MTCNN face "
        "crops, mel chunks of the clip's own audio track (or --audio), the transcript; prints "
        "each emotion's probability and the decision at its validation-tuned threshold. Several "
        "clips, folders of videos or manifests (.csv with a 'clip' column and optional "
        "'transcript'/'audio', .jsonl, .txt) give one row per clip (--csv); a clip that fails "
        "is reported and skipped, and the exit status is 1 if any failed. Whole videos (--out "
        "DIR): cut into utterances by --subtitles or by voice activity, text from the "
        "subtitles or --transcribe, and written as DIR/timeline.csv, .json and .png.",
    )
    pr.add_argument(
        "clip", nargs="+", help="video file(s), folder(s) of videos or frames, or a manifest"
    )
    pr.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .safetensors checkpoint")
    _add_transcript_options(pr)
    pr.add_argument("--audio", metavar="WAV", help="separate audio (default: the clip's track)")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    _add_precision(pr)
    pr.add_argument("--csv", metavar="OUT", help="write one CSV row per clip or segment")
    pr.add_argument("--out", metavar="DIR", help="whole videos: write the timeline files here")
    pr.add_argument("--subtitles", metavar="FILE", help="SRT/WebVTT/ASS: each cue an utterance")
    pr.add_argument(
        "--transcribe", metavar="MODEL", help="speech-recognition model (name or folder) for text"
    )
    pr.add_argument(
        "--overlapping-cues",
        default="error",
        choices=["error", "merge"],
        help="what to do with subtitle cues whose times overlap",
    )
    pr.add_argument(
        "--max-segment", type=float, default=15.0, metavar="S", help="VAD: longest segment (s)"
    )
    pr.add_argument(
        "--min-silence", type=float, default=0.4, metavar="S", help="VAD: pause that splits (s)"
    )
    pr.add_argument("--no-progress", action="store_true", help="no progress bars")
    pr.set_defaults(func=_cmd_predict)

    fl = sub.add_parser(
        "flops",
        help="feature-extraction FLOPs of MESM vs FE2E (a checkpoint on data, or a preset)",
        description="Counts the visual and audio feature extractors (up to the sequence "
        "transformers): dense ops with torch's FlopCounterMode, sparse convolutions from the "
        "sites processed; the attention layers and the text encoder separately. With "
        "--checkpoint and --data: averaged per utterance over a split, against FE2E with the "
        "same weights. Without: an untrained preset on generated inputs.",
    )
    fl.add_argument("--checkpoint", metavar="CKPT")
    fl.add_argument("--data", metavar="DATASET")
    fl.add_argument("--split", default="test")
    fl.add_argument("--p", type=float, help="measure at this nucleus mass")
    fl.add_argument("--arch", default="mesm", choices=["fe2e", "mesm"], help="preset mode")
    fl.add_argument("--preset", default="paper", choices=["paper", "tiny"], help="preset mode")
    fl.add_argument("--frames", type=int, default=8, help="faces per utterance (preset mode)")
    fl.add_argument("--chunks", type=int, default=8, help="mel chunks per utterance (preset)")
    fl.add_argument("--json", metavar="OUT")
    _add_precision(fl)
    fl.set_defaults(func=_cmd_flops)

    sw = sub.add_parser(
        "sweep-p",
        help="accuracy and FLOPs of a MESM checkpoint for several p (the paper's figure)",
        description="For each p: thresholds tuned on the valid split, metrics on --split, "
        "feature-extraction GFLOPs per utterance; writes sweep.json and sweep.png (metrics above,"
        " FLOPs below, FE2E with the same weights as the reference line).",
    )
    sw.add_argument("--checkpoint", required=True, metavar="CKPT")
    sw.add_argument("--data", required=True, metavar="DATASET")
    sw.add_argument("--p", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    sw.add_argument("--split", default="test")
    sw.add_argument("--out", default="sweep", metavar="DIR")
    _add_precision(sw)
    sw.set_defaults(func=_cmd_sweep)

    ex = sub.add_parser(
        "explain",
        help="attention maps of a MESM checkpoint over each face and mel chunk",
        description="For each sparse layer: the attention heat-map and the kept positions over "
        "every face frame and mel chunk of a clip (or of an utterance of a prepared dataset with "
        "--utterance), as PNGs, plus overview.png and attention.json.",
    )
    ex.add_argument("clip", help="a video file, or a prepared dataset folder with --utterance")
    ex.add_argument("--checkpoint", required=True, metavar="CKPT")
    ex.add_argument("--out", required=True, metavar="DIR")
    _add_transcript_options(ex)
    ex.add_argument("--audio", metavar="WAV")
    ex.add_argument("--utterance", metavar="ID", help="utterance id when CLIP is a dataset")
    ex.add_argument("--p", type=float, help="run at this nucleus mass")
    _add_precision(ex)
    ex.set_defaults(func=_cmd_explain)

    se = sub.add_parser(
        "serve",
        help="a web page for a checkpoint: upload a video, see its emotions (needs mesm[app])",
        description="Loads the checkpoint once and serves a Gradio page: a video and its "
        "transcript (or a subtitle file for a long video) in; each emotion's probability with "
        "its validation-tuned threshold, MESM's attention overview and FLOPs against FE2E, or "
        "the timeline of a long video with its CSV, out. Requests run one at a time. Binds to "
        "this machine only unless --host says otherwise.",
    )
    se.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .safetensors checkpoint")
    se.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    se.add_argument("--port", type=int, default=7860)
    se.add_argument("--examples", metavar="DATASET", help="offer this dataset's test clips")
    se.add_argument("--device", default="cpu")
    se.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    _add_precision(se)
    se.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; the project's own errors and OS errors about a path become one line
    (exit status 2). Anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as err:
        if err.filename is not None:
            message = f"{err.filename}: {err.strerror or err}"
        elif isinstance(err, (FileNotFoundError, FileExistsError)):
            message = str(err)  # ours, with the path in the message
        else:
            raise
    except (MesmError, ValueError, RuntimeError) as err:
        message = str(err)
    print(f"mesm {args.command}: error: {message}", file=sys.stderr)
    return 2
