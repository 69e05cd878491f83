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
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from mesm.cli import analysis, data, demo, predict, serve, train
from mesm.cli.common import command_paths
from mesm.errors import MesmError, OptionError
from mesm.paths import check_paths

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
    traceback. Bad command-line syntax exits with status 2 (argparse). Every path the command
    reads and writes is checked first (`mesm.paths.check_paths`): a bad output never costs a run.
    Ctrl-C (SIGINT) and SIGTERM end the command the same way, with one line (what was kept, when
    the command says) and status 130 or 143 (128 + the signal), as shells expect."""
    args = build_parser().parse_args(argv)
    received: list[int] = []
    try:
        with _sigterm_interrupts(received):
            inputs, outputs = command_paths(args)
            check_paths(inputs, outputs, overwrite=getattr(args, "overwrite", False))
            return args.func(args)
    except MesmError as err:
        print(f"mesm {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        signum = received[0] if received else signal.SIGINT
        what = (
            "interrupted"
            if signum == signal.SIGINT
            else f"stopped by {signal.Signals(signum).name}"
        )
        detail = f": {err}" if str(err) else ""
        print(f"mesm {args.command}: {what}{detail}", file=sys.stderr)
        return 128 + signum


@contextlib.contextmanager
def _sigterm_interrupts(received: list[int]) -> Iterator[None]:
    """SIGTERM (a service manager, `kill`, a batch scheduler) raises KeyboardInterrupt, so it
    stops the command as Ctrl-C does: workers ended, finished results kept; the signal is
    appended to `received`."""

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (main() called from a thread)
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
