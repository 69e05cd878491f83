"""The `mesm` command: thin wrappers over library functions, one module per command group.

Each subcommand is a pair next to each other: ``_add_<name>(sub)`` adds its parser and
``_cmd_<name>(args)`` runs it (one library call; the command checks its arguments and prints).
Options that mean the same thing on several subcommands (the dataset, ``--checkpoint``,
``--device``, ``--batch-size``, ``--workers``, ``--no-progress``, ``--json OUT``, ...) are added
by one function each in :mod:`mesm.cli.common`, so their name, help and default agree.

=========================  ================================================
:mod:`mesm.cli.data`       prepare, preprocess, features
:mod:`mesm.cli.train`      train, evaluate, export, compare
:mod:`mesm.cli.predict`    predict
:mod:`mesm.cli.analysis`   flops, sweep-p, explain
:mod:`mesm.cli.serve`      serve
:mod:`mesm.cli.demo`       demo
=========================  ================================================

Library errors that name their inputs as data (:class:`mesm.errors.OptionError`) are worded
here with the flags' names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mesm.cli import analysis, data, demo, predict, serve, train
from mesm.errors import MesmError, OptionError
from mesm.files import check_output_file

# ---- the command --------------------------------------------------------------------------------

SUBCOMMANDS = (
    *demo.COMMANDS,
    *data.COMMANDS,
    *train.COMMANDS,
    *predict.COMMANDS,
    *analysis.COMMANDS,
    *serve.COMMANDS,
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
    if isinstance(err, OptionError):
        return err.words(flag)
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    return str(err)


def flag(option: str) -> str:
    """The command-line flag of a library parameter: "overlapping_cues" → "--overlapping-cues"."""
    return "--" + option.replace("_", "-")


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
