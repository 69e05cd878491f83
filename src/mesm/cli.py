"""The `mesm` command: thin wrappers over library functions.

Each subcommand is a pair next to each other: ``_add_<name>(sub)`` adds its parser and
``_cmd_<name>(args)`` runs it. Options that mean the same thing on several subcommands (the
dataset, ``--checkpoint``, ``--device``, ``--batch-size``, ``--workers``, ``--no-progress``,
``--json OUT``, ...) are added by one function each, so their name, help and default agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mesm.errors import MesmError, UsageError
from mesm.files import atomic_write_text, check_output_file

# ---- options shared by several subcommands ------------------------------------------------------


def _add_dataset(
    parser: argparse.ArgumentParser, *, option: bool = False, required: bool = True
) -> None:
    """The dataset folder: positional where it is what the command works on, ``--data`` where it
    is one input beside a checkpoint. Either way ``args.data``."""
    help_ = "a prepared dataset folder (manifest + clips + splits)"
    if option:
        parser.add_argument("--data", required=required, metavar="DATASET", help=help_)
    else:
        parser.add_argument("data", metavar="DATASET", help=help_)


def _add_checkpoint(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--checkpoint",
        required=required,
        metavar="CKPT",
        help="the model: a .safetensors checkpoint written by `mesm train`, a model folder "
        "(`mesm export`) or a Hugging Face Hub repo id",
    )


def _add_split(parser: argparse.ArgumentParser, default: str | None = "test") -> None:
    parser.add_argument(
        "--split",
        default=default,
        metavar="SPLIT",
        help=f"dataset split (train, valid, test; default: {default or 'all of them'})",
    )


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="cpu", help="torch device to run on: cpu, cuda, cuda:N (default: cpu)"
    )


def _add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=8, metavar="N", help="utterances per batch (default: 8)"
    )


def _add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="worker processes (default 0: this process; capped at the CPU count)",
    )


def _add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite", action="store_true", help="compute again what already exists"
    )


def _add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", metavar="OUT", help="also write the result as JSON to OUT (checked first)"
    )


def _nucleus_mass(text: str) -> float:
    """An argparse type: MESM's nucleus mass p, a number > 0 (p >= 1 keeps every position)."""
    from mesm.models.config import check_p

    try:
        return check_p(float(text))
    except ValueError as err:  # not a number, or not > 0
        raise argparse.ArgumentTypeError(f"p must be a number > 0, got {text!r}") from err


def _add_p(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--p",
        type=_nucleus_mass,
        metavar="P",
        help="MESM's nucleus mass for the top-p selection (default: the checkpoint's; 0.7 for "
        "a preset)",
    )


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


def _add_transcript_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--text", metavar="TEXT", help="what is said in the clip")
    group.add_argument("--transcript-file", metavar="FILE", help="a UTF-8 file holding it")
    group.add_argument(
        "--transcript",
        metavar="TEXT_OR_FILE",
        help="older form: an existing file is read, a path-like word naming no file is an error",
    )


def _command(sub, name: str, func, **kwargs) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, **kwargs)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def _write_json(path: str, value: Any) -> None:
    """`value` as indented JSON at `path`, atomically (NaN as null, paths as strings)."""
    from mesm.evaluation import json_safe

    atomic_write_text(path, json.dumps(json_safe(value), indent=2, default=str) + "\n")
    print(f"written to {path}")


def _workers(args: argparse.Namespace) -> int:
    from mesm.data.workers import cap_workers

    return cap_workers(args.workers, say=True)


def _precision(args: argparse.Namespace, device: str = "cpu"):
    """The --precision choice resolved for `device`, after printing what it is."""
    from mesm.inference.precision import resolve_precision

    precision = resolve_precision(args.precision, device)
    print(precision.describe())
    return precision


# ---- demo ---------------------------------------------------------------------------------------


def _add_demo(sub) -> None:
    demo = _command(
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
    _add_no_progress(demo)
    _add_precision(demo)
    _add_json(demo)


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
    if args.json:
        _write_json(args.json, report)
    return 0


# ---- prepare, preprocess, features --------------------------------------------------------------


def _add_prepare(sub) -> None:
    prep = _command(
        sub,
        "prepare",
        None,
        help="reorganise an official release into a dataset folder (manifest + clips + splits)",
        description="One subcommand per source. iemocap/mosei: cut every utterance from the "
        "official release (IEMOCAP: the speaker's half of the dialog video, its transcript and "
        "label; CMU-MOSEI: segments with emotions present when the annotators' sum > 0) and apply "
        "the paper's split lists (Dai et al. 2021, CC BY 4.0). released: a manifest for the "
        "authors' processed data (meta.pkl read by a restricted unpickler).",
    )
    sources = prep.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name, what in (
        ("iemocap", "the official IEMOCAP release (the folder holding Session1 .. Session5)"),
        ("mosei", "the raw CMU-MOSEI release (Videos/, Audio/, Transcript/, Labels/)"),
    ):
        cut = _command(
            sources,
            name,
            _cmd_prepare_release,
            help=f"cut the utterances of {what}",
            description=f"Cuts every utterance of {what} into a dataset folder.",
        )
        cut.add_argument("--release", required=True, metavar="DIR", help="the release folder")
        cut.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
        _add_keep_unlisted(cut)
        cut.add_argument(
            "--crf", type=int, default=18, help="H.264 quality of the clips (lower is better)"
        )
        _add_workers(cut)
        _add_overwrite(cut)
        _add_no_progress(cut)
        _add_json(cut)
    released = _command(
        sources,
        "released",
        _cmd_prepare_released,
        help="a manifest for the authors' processed data (IEMOCAP_/MOSEI_RAW_PROCESSED)",
        description="Writes a manifest for the authors' processed data; its meta.pkl is read "
        "by a restricted unpickler.",
    )
    released.add_argument(
        "--release", required=True, metavar="DIR", help="IEMOCAP_ or MOSEI_RAW_PROCESSED"
    )
    released.add_argument(
        "--kind", choices=["iemocap", "mosei"], default="iemocap", help="which of the two it is"
    )
    released.add_argument(
        "--out", metavar="DIR", help="dataset folder to write (default: the release folder)"
    )
    _add_keep_unlisted(released)
    _add_json(released)


def _add_keep_unlisted(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-unlisted", action="store_true", help="keep ids in none of the paper's split lists"
    )


def _cmd_prepare_release(args: argparse.Namespace) -> int:
    from mesm.data import prepare_iemocap, prepare_mosei

    prepare = prepare_iemocap if args.source == "iemocap" else prepare_mosei
    report = prepare(
        args.release,
        args.out,
        keep_unlisted=args.keep_unlisted,
        num_workers=_workers(args),
        overwrite=args.overwrite,
        crf=args.crf,
        progress=not args.no_progress,
    )
    return _print_report(args, report)


def _cmd_prepare_released(args: argparse.Namespace) -> int:
    from mesm.data import prepare_released

    report = prepare_released(args.release, args.kind, args.out, keep_unlisted=args.keep_unlisted)
    return _print_report(args, report)


def _print_report(args: argparse.Namespace, report) -> int:
    """A data command's report (a dataclass with `summary()`): printed, and written by --json."""
    print(report.summary())
    if args.json:
        _write_json(args.json, dataclasses.asdict(report))
    return 0


def _add_dataset_job_options(parser: argparse.ArgumentParser) -> None:
    """What the commands that compute a dataset's cache (preprocess, features) share."""
    _add_split(parser, default=None)
    _add_workers(parser)
    _add_overwrite(parser)
    _add_no_progress(parser)
    _add_json(parser)


def _add_preprocess(sub) -> None:
    pre = _command(
        sub,
        "preprocess",
        _cmd_preprocess,
        help="compute face crops and mel chunks once into the dataset's feature cache",
        description="Decodes every clip, samples a frame every --img-interval ms, crops faces "
        "with MTCNN (centre crop when none is found: counted and reported), computes the mel "
        "chunks and stores them in a cache keyed by these settings. Resumable: finished entries "
        "are kept.",
    )
    _add_dataset(pre)
    pre.add_argument("--img-interval", type=float, default=500, help="ms between frames")
    pre.add_argument("--log-mel", action="store_true", help="store log-mel instead of power mel")
    _add_device(pre)
    _add_dataset_job_options(pre)


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from mesm.data import PreprocessSettings, preprocess_dataset

    settings = PreprocessSettings(img_interval_ms=args.img_interval, log_mel=args.log_mel)
    report = preprocess_dataset(
        args.data,
        settings,
        num_workers=_workers(args),
        device=args.device,
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    return _print_report(args, report)


def _add_features(sub) -> None:
    fe = _command(
        sub,
        "features",
        _cmd_features,
        help="hand-crafted feature sequences for the two-phase baselines",
        description="Extracts fixed features per utterance into the dataset's cache: openSMILE "
        "low-level descriptors (eGeMAPS, or ComParE_2016) for audio; per sampled frame the MTCNN "
        "box, landmarks and a HOG descriptor of the face for video; static word vectors (the "
        "text model's input embeddings, or a GloVe file) for text. Used by the lf_lstm, "
        "lf_transformer, mult and emoembs models.",
    )
    _add_dataset(fe)
    fe.add_argument("--audio-set", default="egemaps", choices=["egemaps", "compare"])
    fe.add_argument("--glove", metavar="FILE", help="GloVe text file for the word vectors")
    _add_dataset_job_options(fe)


def _cmd_features(args: argparse.Namespace) -> int:
    from mesm.data.handcrafted.features import FeatureSettings, extract_features

    settings = FeatureSettings(audio_set=args.audio_set, glove=args.glove)
    report = extract_features(
        args.data,
        settings,
        num_workers=_workers(args),
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    return _print_report(args, report)


# ---- train, evaluate, compare -------------------------------------------------------------------


def _add_train(sub) -> None:
    tr = _command(
        sub,
        "train",
        _cmd_train,
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
    _add_no_progress(tr)
    _add_json(tr)


def _cmd_train(args: argparse.Namespace) -> int:
    from mesm.training.config import load_run_config
    from mesm.training.fit import train

    out = Path(args.resume or args.out)
    config_path = args.config
    if args.resume and config_path is None:
        config_path = out / "config.yaml"
    sets = args.set + ([f"trainer.precision={args.precision}"] if args.precision else [])
    config = load_run_config(config_path, sets)
    result = train(config, out, resume=bool(args.resume), enable_progress_bar=not args.no_progress)
    from mesm.evaluation import format_table

    for split in ("valid", "test"):
        report = result.metrics.get(split)
        if report:
            print(format_table(report, f"{split} ({report['num_samples']} utterances)"))
    print(f"model: {result.checkpoint}\nrun folder: {result.run_dir}")
    if args.json:
        _write_json(
            args.json,
            {"run_dir": result.run_dir, "checkpoint": result.checkpoint, **result.metrics},
        )
    return 0


def _add_evaluate(sub) -> None:
    ev = _command(
        sub,
        "evaluate",
        _cmd_evaluate,
        help="per-emotion metrics of a checkpoint on a dataset split",
        description="Applies the checkpoint's validation-tuned thresholds to a split and prints "
        "accuracy (single-label) or weighted accuracy (multi-label), F1 and AUC per emotion.",
    )
    _add_checkpoint(ev)
    _add_dataset(ev, option=True)
    _add_split(ev)
    _add_batch_size(ev)
    _add_workers(ev)
    _add_device(ev)
    _add_precision(ev)
    _add_json(ev)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mesm.evaluation import format_table
    from mesm.inference.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        batch_size=args.batch_size,
        num_workers=_workers(args),
        device=args.device,
        precision=_precision(args, args.device),
    )
    print(format_table(report, f"{args.split} ({report['num_samples']} utterances)"))
    if args.json:
        _write_json(args.json, report)
    return 0


def _add_export(sub) -> None:
    ex = _command(
        sub,
        "export",
        _cmd_export,
        help="a checkpoint as a Hugging Face-style model folder (or a folder as one file)",
        description="Writes the model as a folder the Hugging Face Hub takes as is: config.json "
        "(model config, label names, thresholds, preprocessing, weight checksum), "
        "model.safetensors and a README.md model card; with --file, one self-contained "
        ".safetensors checkpoint instead. Both load with --checkpoint, identically.",
    )
    _add_checkpoint(ex)
    ex.add_argument("out", metavar="OUT", help="the folder (or, with --file, the file) to write")
    ex.add_argument("--file", action="store_true", help="write one .safetensors file instead")
    _add_json(ex)


def _cmd_export(args: argparse.Namespace) -> int:
    from mesm.inference.checkpoint import load_model

    trained = load_model(args.checkpoint)
    written = trained.save(args.out) if args.file else trained.save_pretrained(args.out)
    files = [str(written)] if args.file else sorted(str(p) for p in written.iterdir())
    print("written: " + ", ".join(files))
    if args.json:
        _write_json(args.json, {"source": args.checkpoint, "files": files})
    return 0


def _add_compare(sub) -> None:
    co = _command(
        sub,
        "compare",
        _cmd_compare,
        help="one table of several runs in the paper's layout",
        description="Rows: the runs' models; columns: each emotion's Acc/F1 (or WAcc/F1) and the "
        "averages, from each RUN_DIR's metrics.json and config.yaml.",
    )
    co.add_argument("runs", nargs="+", metavar="RUN_DIR")
    co.add_argument("--split", default="test", choices=["valid", "test"], help="default: test")
    _add_json(co)


def _cmd_compare(args: argparse.Namespace) -> int:
    from mesm.evaluation.compare import compare_records, compare_runs

    print(compare_runs(args.runs, split=args.split))
    if args.json:
        _write_json(args.json, compare_records(args.runs, split=args.split))
    return 0


# ---- predict ------------------------------------------------------------------------------------


def _add_predict(sub) -> None:
    pr = _command(
        sub,
        "predict",
        _cmd_predict,
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
    _add_checkpoint(pr)
    _add_transcript_options(pr)
    pr.add_argument("--audio", metavar="WAV", help="separate audio (default: the clip's track)")
    _add_device(pr)
    _add_precision(pr)
    _add_json(pr)
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
    _add_no_progress(pr)


def _transcript(args: argparse.Namespace) -> str:
    from mesm.inference.predict import read_transcript, read_transcript_file

    if args.transcript_file is not None:
        return read_transcript_file(args.transcript_file)
    if args.text is not None:
        return args.text
    return read_transcript(args.transcript)


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
    from mesm.inference.batch import clip_row, expand_inputs
    from mesm.inference.predict import Predictor, predict_clip

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
            _write_json(args.json, result)
        if args.csv:
            row = clip_row(result, result["clip"])
            _write_rows_csv(args.csv, [row], list(result["emotions"]))
        return 0
    clips = expand_inputs(args.clip)
    if not clips:
        raise UsageError(f"no clips in {' '.join(args.clip)}")
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
        _write_json(args.json, rows)
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


def _write_rows_csv(path: str, rows: list[dict], label_names: list[str]) -> None:
    from mesm.files import atomic_write_bytes
    from mesm.inference.timeline import prediction_rows_csv

    atomic_write_bytes(path, prediction_rows_csv(rows, label_names).encode("utf-8"))
    print(f"{len(rows)} row(s) written to {path}")


def _predict_timelines(args, clips, predictor, failed, report_failure) -> list[dict]:
    """Whole-video mode: a timeline (CSV, JSON, PNG) per video under --out."""
    from mesm.analysis.timeline import write_timeline
    from mesm.data.media.segments import VadSettings
    from mesm.inference.batch import CLIP_ERRORS, failure_line
    from mesm.inference.timeline import predict_video

    if not args.out:
        raise UsageError("whole-video prediction (--subtitles / --transcribe) needs --out DIR")
    if args.json:
        raise UsageError("--json is for clips; whole videos get DIR/timeline.json (--out DIR)")
    if args.subtitles and args.transcribe:
        raise UsageError("give --subtitles or --transcribe, not both (subtitles carry the text)")
    if args.subtitles and len(clips) != 1:
        raise UsageError(f"--subtitles belongs to one video, got {len(clips)} inputs")
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
            reason = failure_line(err)
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


# ---- flops, sweep-p, explain --------------------------------------------------------------------


def _add_flops(sub) -> None:
    fl = _command(
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
    _add_checkpoint(fl, required=False)
    _add_dataset(fl, option=True, required=False)
    _add_split(fl)
    _add_batch_size(fl)
    _add_p(fl)
    fl.add_argument("--arch", default="mesm", choices=["fe2e", "mesm"], help="preset mode")
    fl.add_argument("--preset", default="paper", choices=["paper", "tiny"], help="preset mode")
    fl.add_argument("--frames", type=int, default=8, help="faces per utterance (preset mode)")
    fl.add_argument("--chunks", type=int, default=8, help="mel chunks per utterance (preset)")
    _add_precision(fl)
    _add_json(fl)


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
            precision=_precision(args),
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
        _write_json(args.json, report)
    return 0


def _add_sweep(sub) -> None:
    sw = _command(
        sub,
        "sweep-p",
        _cmd_sweep,
        help="accuracy and FLOPs of a MESM checkpoint for several p (the paper's figure)",
        description="For each p: thresholds tuned on the valid split, metrics on --split, "
        "feature-extraction GFLOPs per utterance; writes sweep.json and sweep.png (metrics above,"
        " FLOPs below, FE2E with the same weights as the reference line).",
    )
    _add_checkpoint(sw)
    _add_dataset(sw, option=True)
    sw.add_argument(
        "--ps",
        type=_nucleus_mass,
        nargs="+",
        metavar="P",
        help="the nucleus masses to measure (default: 0.1 0.2 ... 1.0)",
    )
    _add_split(sw)
    _add_batch_size(sw)
    sw.add_argument("--out", default="sweep", metavar="DIR", help="folder for sweep.json/.png")
    _add_precision(sw)
    _add_json(sw)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mesm.analysis.sweep import sweep_p

    result = sweep_p(
        args.checkpoint,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        out_dir=args.out,
        precision=_precision(args),
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
        _write_json(args.json, result)
    return 0


def _add_explain(sub) -> None:
    ex = _command(
        sub,
        "explain",
        _cmd_explain,
        help="attention maps of a MESM checkpoint over each face and mel chunk",
        description="For each sparse layer: the attention heat-map and the kept positions over "
        "every face frame and mel chunk of a clip (or of an utterance of a prepared dataset with "
        "--utterance), as PNGs, plus overview.png and attention.json.",
    )
    ex.add_argument("clip", help="a video file, or a prepared dataset folder with --utterance")
    _add_checkpoint(ex)
    ex.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    _add_transcript_options(ex)
    ex.add_argument("--audio", metavar="WAV", help="separate audio (default: the clip's track)")
    ex.add_argument("--utterance", metavar="ID", help="utterance id when CLIP is a dataset")
    _add_p(ex)
    _add_precision(ex)
    _add_json(ex)


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
    if args.json:
        _write_json(args.json, result)
    return 0


# ---- serve --------------------------------------------------------------------------------------


def _add_serve(sub) -> None:
    se = _command(
        sub,
        "serve",
        _cmd_serve,
        help="a web page for a checkpoint: upload a video, see its emotions (needs mesm[app])",
        description="Loads the checkpoint once and serves a Gradio page: a video and its "
        "transcript (or a subtitle file for a long video) in; each emotion's probability with "
        "its validation-tuned threshold, MESM's attention overview and FLOPs against FE2E, or "
        "the timeline of a long video with its CSV, out. Requests run one at a time. Binds to "
        "this machine only unless --host says otherwise.",
    )
    _add_checkpoint(se)
    se.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    se.add_argument("--port", type=int, default=7860)
    se.add_argument("--examples", metavar="DATASET", help="offer this dataset's test clips")
    _add_device(se)
    se.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    _add_precision(se)


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


# ---- the command --------------------------------------------------------------------------------

SUBCOMMANDS = (
    _add_demo,
    _add_prepare,
    _add_preprocess,
    _add_features,
    _add_train,
    _add_evaluate,
    _add_export,
    _add_compare,
    _add_predict,
    _add_flops,
    _add_sweep,
    _add_explain,
    _add_serve,
)


def build_parser() -> argparse.ArgumentParser:
    from mesm import __version__

    parser = argparse.ArgumentParser(
        prog="mesm",
        description="End-to-end multimodal emotion recognition: FE2E and the sparse MESM.",
    )
    parser.add_argument("--version", action="version", version=f"mesm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def error_message(err: MesmError) -> str:
    """What the command line prints for one of our errors (an OS-style one names its path)."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    return str(err)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command. The project's own errors (`mesm.errors.MesmError`: bad input, files,
    settings) become one message on stderr and exit status 1; anything else is a bug and keeps its
    traceback. Bad command-line syntax exits with status 2 (argparse). Ctrl-C ends the command
    with one line (what a data job kept, when it says) and status 130, as shells expect."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "json", None):
            check_output_file(args.json)  # before any work: a bad --json never costs a run
        return args.func(args)
    except MesmError as err:
        print(f"mesm {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        detail = f": {err}" if str(err) else ""
        print(f"mesm {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
