"""`mesm serve`: a checkpoint behind a web page."""

from __future__ import annotations

import argparse

from mesm.cli.common import (
    add_checkpoint,
    add_device,
    add_precision,
    command,
    port,
    positive_float,
    precision,
)


def _add_serve(sub) -> None:
    se = command(
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
    add_checkpoint(se)
    se.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    se.add_argument("--port", type=port, default=7860)
    se.add_argument("--examples", metavar="DATASET", help="offer this dataset's test clips")
    add_device(se)
    se.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    se.add_argument(
        "--max-upload",
        type=positive_float,
        default=1024,
        metavar="MB",
        help="largest upload accepted, in MB (default: 1024); uploads are deleted when the "
        "server stops, and after an hour while it runs",
    )
    add_precision(se)


def _cmd_serve(args: argparse.Namespace) -> int:
    from mesm.app.page import serve

    serve(
        args.checkpoint,
        host=args.host,
        port=args.port,
        examples=args.examples,
        device=args.device,
        precision=precision(args, args.device),
        share=args.share,
        max_upload_mb=args.max_upload,
    )
    return 0


# The subcommands of this group, in the order `mesm --help` lists them.
COMMANDS = (_add_serve,)
