"""`mesm predict`: clips, batches of clips and whole videos (the work is `mesm.inference`'s)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mesm.cli.common import (
    add_checkpoint,
    add_device,
    add_face,
    add_json,
    add_no_progress,
    add_precision,
    add_transcript_options,
    command,
    declare_out,
    positive_float,
    precision,
    transcript,
    write_json,
)
from mesm.errors import UsageError

if TYPE_CHECKING:
    from mesm.inference.batch import ClipInput
    from mesm.inference.predict import Predictor
    from mesm.inference.video import VideoOutcome
    from mesm.trained.precision import Precision


def _add_predict(sub) -> None:
    pr = command(
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
    add_checkpoint(pr)
    add_transcript_options(pr)
    pr.add_argument("--audio", metavar="WAV", help="separate audio (default: the clip's track)")
    add_face(pr, None, "speaker for whole videos, the checkpoint's rule (largest) for clips")
    add_device(pr)
    add_precision(pr)
    add_json(pr)
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
        "--max-segment",
        type=positive_float,
        default=15.0,
        metavar="S",
        help="VAD: longest segment (s)",
    )
    pr.add_argument(
        "--min-silence",
        type=positive_float,
        default=0.4,
        metavar="S",
        help="VAD: pause that splits (s)",
    )
    add_no_progress(pr)
    declare_out(pr, writes=("timeline.csv", "timeline.json", "timeline.png"))


def face_line(face: dict) -> str:
    """One line on the face chosen with ``--face speaker`` (a clip's ``preprocessing.face``)."""
    how = f"largest face kept ({face['fallback']})" if face["fallback"] else "speaker's face"
    return (
        f"face: {how}, track {face['track']} of {face['tracks']}, found in "
        f"{100 * face['speaker_found']:.0f}% of the frames"
    )


def _print_prediction(result: dict) -> None:
    info = result["preprocessing"]
    print(
        f"{result['clip']}: {info['frames']} frames ({info['faces_found']} with a detected face, "
        f"the rest centre-cropped), {info['chunks']} mel chunks"
    )
    if "face" in info:
        print(face_line(info["face"]))
    print(f"{'emotion':<14}{'probability':>12}{'threshold':>11}  present")
    for name, e in result["emotions"].items():
        mark = "yes" if e["present"] else "-"
        print(f"{name:<14}{e['probability']:>12.3f}{e['threshold']:>11.2f}  {mark}")
    if "top" in result:
        print(f"most likely: {result['top']}")


def _cmd_predict(args: argparse.Namespace) -> int:
    from mesm.inference.batch import Interrupted, expand_inputs, one_clip
    from mesm.inference.predict import Predictor

    text = transcript(args)
    resolved = precision(args, args.device)
    whole_video = bool(args.out or args.subtitles or args.transcribe)
    clip = None if whole_video else one_clip(args.clip)
    if clip is not None:
        return _predict_one_clip(args, clip, text, resolved)
    clips = expand_inputs(args.clip)
    if not clips:
        raise UsageError(f"no clips in {' '.join(args.clip)}")
    face = args.face or ("speaker" if whole_video else None)
    predictor = Predictor(args.checkpoint, args.device, resolved, face=face)
    stopped = None
    try:
        if whole_video:
            rows, failed = _predict_videos(args, clips, predictor)
        else:
            rows, failed = _predict_clips(args, clips, predictor, text)
    except Interrupted as err:  # Ctrl-C or SIGTERM: the finished rows are still written
        rows, failed, stopped = err.rows, err.failures, err
    if args.csv:
        _write_rows_csv(args.csv, rows, predictor.label_names)
    if args.json and not whole_video:
        write_json(args.json, rows)
    if stopped is not None:
        kept = f"; their {len(rows)} row(s) are written" if args.csv or args.json else ""
        raise KeyboardInterrupt(f"{stopped}{kept}") from None
    done = len(clips) - len(failed)
    print(f"{done} of {len(clips)} input(s) predicted, {len(rows)} row(s)")
    if failed:
        print(f"mesm predict: {len(failed)} of {len(clips)} input(s) failed:", file=sys.stderr)
        for path, reason in failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def _predict_one_clip(args: argparse.Namespace, clip: Path, text: str, resolved: Precision) -> int:
    """One clip: its emotions as a table (and --json, --csv)."""
    from mesm.inference.outputs import clip_row
    from mesm.inference.predict import predict_clip

    result = predict_clip(
        args.checkpoint,
        clip,
        text,
        audio=args.audio,
        device=args.device,
        precision=resolved,
        face=args.face,
    )
    _print_prediction(result)
    if args.json:
        write_json(args.json, result)
    if args.csv:
        _write_rows_csv(args.csv, [clip_row(result, result["clip"])], list(result["emotions"]))
    return 0


def _report_failure(path: object, reason: str) -> None:
    print(f"mesm predict: failed: {path}: {reason}", file=sys.stderr)


def _predict_clips(
    args: argparse.Namespace, clips: list[ClipInput], predictor: Predictor, text: str
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Several clips: one line each; (rows, failures)."""
    from mesm.inference.batch import predict_clips

    rows, failed = predict_clips(
        predictor,
        clips,
        transcript=text,
        audio=args.audio,
        progress=not args.no_progress,
        on_failure=_report_failure,
    )
    for row in rows:
        present = ", ".join(row["present"]) or "-"
        top = f"; most likely {row['top']}" if "top" in row else ""
        print(f"{row['clip']}: present: {present}{top}")
    return rows, failed


def _predict_videos(
    args: argparse.Namespace, clips: list[ClipInput], predictor: Predictor
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Whole videos: a timeline (CSV, JSON, PNG) per video under --out; (rows, failures)."""
    from mesm.data.media.segments import VadSettings
    from mesm.inference.batch import Interrupted
    from mesm.inference.video import predict_videos

    if not args.out:
        raise UsageError("whole-video prediction (--subtitles / --transcribe) needs --out DIR")
    if args.json:
        raise UsageError("--json is for clips; whole videos get DIR/timeline.json (--out DIR)")
    outcomes = predict_videos(
        predictor,
        clips,
        args.out,
        subtitles=args.subtitles,
        transcribe=args.transcribe,
        audio=args.audio,
        overlapping_cues=args.overlapping_cues,
        vad=VadSettings(max_segment=args.max_segment, min_silence=args.min_silence),
        progress=not args.no_progress,
        face=predictor.settings.face,
    )
    rows: list[dict] = []
    failed: list[tuple[str, str]] = []
    finished: list[VideoOutcome] = []
    try:
        for outcome in outcomes:
            finished.append(outcome)
            _report_video(outcome, rows, failed)
    except KeyboardInterrupt as err:  # the finished videos' timelines are written already
        message = f"{len(finished)} of {len(clips)} video(s) finished; {err}"
        raise Interrupted(message, rows, failed) from None
    return rows, failed


def _report_video(outcome: VideoOutcome, rows: list[dict], failed: list[tuple[str, str]]) -> None:
    """Prints one video's outcome, appending to `rows` or `failed`."""
    if outcome.failure is not None:
        failed.append((str(outcome.clip), outcome.failure))
        _report_failure(outcome.clip, outcome.failure)
        return
    timeline = outcome.timeline
    for warning in timeline.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    rows.extend(timeline.rows)
    print(f"{outcome.clip}: {timeline.segmentation.summary()}")
    if timeline.face_summary:
        print(f"  {timeline.face_summary}")
    for note in timeline.segmentation.notes:
        print(f"  {note}")
    print(f"  written: {', '.join(str(p) for p in outcome.files.values())}")


def _write_rows_csv(path: str, rows: list[dict], label_names: list[str]) -> None:
    from mesm.inference.outputs import write_rows_csv

    write_rows_csv(path, rows, label_names)
    print(f"{len(rows)} row(s) written to {path}")


COMMANDS = (_add_predict,)
