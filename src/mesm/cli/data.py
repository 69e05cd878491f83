"""`mesm prepare`, `mesm preprocess`, `mesm features`: a dataset folder and its caches."""

from __future__ import annotations

import argparse
import dataclasses

from mesm.cli.common import (
    add_dataset,
    add_device,
    add_face,
    add_json,
    add_no_progress,
    add_overwrite,
    add_split,
    add_workers,
    command,
    declare_out,
    positive_float,
    workers,
    write_json,
)


def _add_prepare(sub) -> None:
    prep = command(
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
        cut = command(
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
        add_workers(cut)
        add_overwrite(cut)
        declare_out(cut, existing="continue")  # resumable: finished clips are kept
        add_no_progress(cut)
        add_json(cut)
    released = command(
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
    add_json(released)
    # Its manifest goes into the release folder by default (meta.pkl, the input, is not touched).
    declare_out(
        released,
        existing="continue",
        writes=("dataset.json", "manifest.jsonl"),
        may_write_into=("release",),
    )


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
        num_workers=workers(args),
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
        write_json(args.json, dataclasses.asdict(report))
    return 0


def _add_dataset_job_options(parser: argparse.ArgumentParser) -> None:
    """What the commands that compute a dataset's cache (preprocess, features) share."""
    add_split(parser, default=None)
    add_workers(parser)
    add_overwrite(parser)
    add_no_progress(parser)
    add_json(parser)


def _add_preprocess(sub) -> None:
    pre = command(
        sub,
        "preprocess",
        _cmd_preprocess,
        help="compute face crops and mel chunks once into the dataset's feature cache",
        description="Decodes every clip, samples a frame every --img-interval ms, crops faces "
        "with MTCNN (centre crop when none is found: counted and reported), computes the mel "
        "chunks and stores them in a cache keyed by these settings. Resumable: finished entries "
        "are kept.",
    )
    add_dataset(pre)
    pre.add_argument("--img-interval", type=positive_float, default=500, help="ms between frames")
    pre.add_argument("--log-mel", action="store_true", help="store log-mel instead of power mel")
    add_face(pre, "largest", "largest")
    add_device(pre)
    _add_dataset_job_options(pre)


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from mesm.data import PreprocessSettings, preprocess_dataset

    settings = PreprocessSettings(
        img_interval_ms=args.img_interval, log_mel=args.log_mel, face=args.face
    )
    report = preprocess_dataset(
        args.data,
        settings,
        num_workers=workers(args),
        device=args.device,
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    return _print_report(args, report)


def _add_features(sub) -> None:
    fe = command(
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
    add_dataset(fe)
    fe.add_argument("--audio-set", default="egemaps", choices=["egemaps", "compare"])
    fe.add_argument("--glove", metavar="FILE", help="GloVe text file for the word vectors")
    _add_dataset_job_options(fe)


def _cmd_features(args: argparse.Namespace) -> int:
    from mesm.data.handcrafted.features import FeatureSettings, extract_features

    settings = FeatureSettings(audio_set=args.audio_set, glove=args.glove)
    report = extract_features(
        args.data,
        settings,
        num_workers=workers(args),
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    return _print_report(args, report)


# The subcommands of this group, in the order `mesm --help` lists them.
COMMANDS = (_add_prepare, _add_preprocess, _add_features)
