"""Options that mean the same thing on several subcommands, added by one function each (so
their name, help and default agree), and the few steps every command shares: resolving
``--precision`` (printed once), ``--workers``, ``--text``/``--transcript-file``/``--transcript``,
writing ``--json``, and what each command reads and writes (`command_paths`: checked by
`mesm.paths.check_paths` before any work).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mesm.files import atomic_write_text
from mesm.models.config import DEFAULT_P
from mesm.paths import Input, Output

if TYPE_CHECKING:
    from mesm.trained.precision import Precision


def add_dataset(
    parser: argparse.ArgumentParser, *, option: bool = False, required: bool = True
) -> None:
    """The dataset folder: positional where it is what the command works on, ``--data`` where it
    is one input beside a checkpoint. Either way ``args.data``."""
    help_ = "a prepared dataset folder (manifest + clips + splits)"
    if option:
        parser.add_argument("--data", required=required, metavar="DATASET", help=help_)
    else:
        parser.add_argument("data", metavar="DATASET", help=help_)


def add_checkpoint(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--checkpoint",
        required=required,
        metavar="CKPT",
        help="the model: a .safetensors checkpoint written by `mesm train`, a model folder "
        "(`mesm export`) or a Hugging Face Hub repo id",
    )


def add_split(parser: argparse.ArgumentParser, default: str | None = "test") -> None:
    parser.add_argument(
        "--split",
        default=default,
        metavar="SPLIT",
        help=f"dataset split (train, valid, test; default: {default or 'all of them'})",
    )


# ---- argparse types: a bad number or device is a one-line usage error, before any work -----------


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (``nan``, ``inf``, 0 and negatives are refused,
    so no option silently turns a limit off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {text!r}")
    return value


def device(text: str) -> str:
    """An argparse type: a torch device this machine has (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        parsed = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r} (cpu, cuda, cuda:N, mps)"
        ) from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is available here")
        if parsed.index is not None and parsed.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA GPU(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: no MPS device is available here")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r} (cpu, cuda, cuda:N, mps)")
    return text


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device,
        default="cpu",
        help="torch device to run on: cpu, cuda, cuda:N (default: cpu)",
    )


def add_face(parser: argparse.ArgumentParser, default: str | None, default_text: str) -> None:
    """``--face speaker|largest``: which face of a frame is cropped."""
    parser.add_argument(
        "--face",
        choices=["speaker", "largest"],
        default=default,
        help="which face to crop when a frame shows several: the speaker's (the face track "
        "whose mouth moves with the speech; the largest face when they cannot be told apart, "
        f"counted) or the largest one (the paper's rule); default: {default_text}",
    )


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="N",
        help="utterances per batch (default: 8)",
    )


def add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="worker processes (default 0: this process; capped at the CPU count)",
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs (--json, --csv, the files --out holds); prepare, "
        "preprocess and features also compute again what they already hold",
    )


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json OUT``, and ``--overwrite`` where the command has none yet (every command that
    writes a file has both: an existing output is replaced only with ``--overwrite``)."""
    parser.add_argument(
        "--json", metavar="OUT", help="also write the result as JSON to OUT (checked first)"
    )
    if "overwrite" not in {action.dest for action in parser._actions}:
        add_overwrite(parser)


def nucleus_mass(text: str) -> float:
    """An argparse type: MESM's nucleus mass p, a number > 0 (p >= 1 keeps every position)."""
    from mesm.models.config import check_p

    try:
        return check_p(positive_float(text))
    except (argparse.ArgumentTypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"p must be a finite number > 0, got {text!r}") from err


def add_p(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--p",
        type=nucleus_mass,
        metavar="P",
        help="MESM's nucleus mass for the top-p selection (default: the checkpoint's; "
        f"{DEFAULT_P} for a preset)",
    )


def add_precision(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    from mesm.trained.precision import PRECISIONS

    parser.add_argument(
        "--precision",
        default=default,
        metavar="{" + ",".join(PRECISIONS) + "}",
        help="numeric precision: 32 (float32), bf16 (bfloat16 autocast, weights float32), "
        "16-mixed (float16, CUDA); auto = bf16 on a CPU with bf16 matrix units "
        "(avx512_bf16/amx_bf16) or a GPU that supports it, fp16 on other GPUs, else 32"
        + (" (default)" if default == "auto" else "; default: the config's trainer.precision"),
    )


def add_transcript_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--text", metavar="TEXT", help="what is said in the clip")
    group.add_argument(
        "--transcript-file",
        metavar="FILE",
        help="a text file holding it (UTF-8, UTF-16 with its mark, or Windows-1252)",
    )
    group.add_argument(
        "--transcript",
        metavar="TEXT_OR_FILE",
        help="older form: an existing file is read, a path-like word naming no file is an error",
    )


def command(sub, name: str, func, **kwargs) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, **kwargs)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def write_json(path: str, value: Any) -> None:
    """`value` as indented JSON at `path`, atomically (NaN as null, paths as strings)."""
    from mesm.evaluation import json_safe

    atomic_write_text(path, json.dumps(json_safe(value), indent=2, default=str) + "\n")
    print(f"written to {path}")


def workers(args: argparse.Namespace) -> int:
    from mesm.jobs.workers import cap_workers, cpu_count

    capped = cap_workers(args.workers)
    if capped < args.workers:  # the CPU count lowered the request
        print(
            f"mesm: --workers {args.workers} capped at {cpu_count()} (the CPUs available here)",
            file=sys.stderr,
        )
    return capped


def precision(args: argparse.Namespace, device: str = "cpu") -> Precision:
    """The --precision choice resolved for `device`, after printing what it is."""
    from mesm.trained.precision import resolve_precision

    precision = resolve_precision(args.precision, device)
    print(precision.describe())
    return precision


def transcript(args: argparse.Namespace) -> str:
    from mesm.inference.predict import read_transcript, read_transcript_file

    if args.text is not None:
        return args.text
    if args.transcript_file is not None:
        text = read_transcript_file(args.transcript_file)
    else:
        text = read_transcript(args.transcript)
    report_encoding(getattr(text, "encoding", None), args.transcript_file or args.transcript)
    return text


def report_encoding(encoding: str | None, path: object) -> None:
    """One line when a user's text file was not plain UTF-8 (what it was read as)."""
    if encoding not in (None, "utf-8"):
        print(f"mesm: read {path} as {encoding} (not UTF-8)", file=sys.stderr)


# ---- what a command reads and writes ------------------------------------------------------------

# The options that name something a command reads: dest -> (how the user names it, whether it is
# a model (a folder of one: nothing is written inside it)). Positionals by their metavar.
INPUT_OPTIONS: dict[str, tuple[str, bool]] = {
    "checkpoint": ("--checkpoint", True),
    "transcribe": ("--transcribe", True),
    "data": ("DATASET", False),
    "clip": ("CLIP", False),
    "runs": ("RUN_DIR", False),
    "release": ("--release", False),
    "examples": ("--examples", False),
    "audio": ("--audio", False),
    "transcript_file": ("--transcript-file", False),
    "subtitles": ("--subtitles", False),
    "glove": ("--glove", False),
    "config": ("--config", False),
}
FILE_OUTPUTS = ("json", "csv")


@dataclass(frozen=True)
class OutRule:
    """What a command's ``out`` option (``--out DIR``, or export's ``OUT``) is: see
    `mesm.paths.Output`. ``file_when``: the option that makes it a file instead (export's
    ``--file``); ``may_write_into``: input options whose folder it may be or write into."""

    flag: str = "--out"
    kind: Literal["file", "folder"] = "folder"
    existing: Literal["overwrite", "continue", "command"] = "overwrite"
    writes: tuple[str, ...] = ()
    file_when: str | None = None
    may_write_into: tuple[str, ...] = ()


def declare_out(parser: argparse.ArgumentParser, **rule: Any) -> None:
    """Declares what `parser`'s command writes at ``out`` (keyword arguments of `OutRule`)."""
    parser.set_defaults(out_rule=OutRule(**rule))


def _paths_of(value: object) -> list[Path]:
    values = value if isinstance(value, list | tuple) else [value]
    return [Path(v) for v in values if v]


def command_paths(args: argparse.Namespace) -> tuple[list[Input], list[Output]]:
    """The inputs and outputs of the parsed command, from its options (`INPUT_OPTIONS`, --json,
    --csv and its declared ``out``)."""
    rule: OutRule = getattr(args, "out_rule", OutRule())
    inputs = [
        Input(path, flag, model=model)
        for dest, (flag, model) in INPUT_OPTIONS.items()
        if dest not in rule.may_write_into
        for path in _paths_of(getattr(args, dest, None))
    ]
    legacy = getattr(args, "transcript", None)  # an existing file is read, else it is the text
    if legacy and Path(legacy).is_file():
        inputs.append(Input(Path(legacy), "--transcript"))
    outputs = [
        Output(path, "--" + dest)
        for dest in FILE_OUTPUTS
        for path in _paths_of(getattr(args, dest, None))
    ]
    for path in _paths_of(getattr(args, "out", None)):
        as_file = rule.file_when is not None and getattr(args, rule.file_when, False)
        kind = "file" if as_file else rule.kind
        writes = () if as_file else rule.writes
        outputs.append(Output(path, rule.flag, kind, rule.existing, writes))
    return inputs, outputs
