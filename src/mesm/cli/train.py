"""`mesm train`, `mesm evaluate`, `mesm export`, `mesm compare`: runs and trained models."""

from __future__ import annotations

import argparse
from pathlib import Path

from mesm.cli.common import (
    add_batch_size,
    add_checkpoint,
    add_dataset,
    add_device,
    add_json,
    add_no_progress,
    add_precision,
    add_split,
    add_workers,
    command,
    declare_out,
    precision,
    workers,
    write_json,
)


def _add_train(sub) -> None:
    tr = command(
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
    add_precision(tr, default=None)
    add_no_progress(tr)
    declare_out(tr, existing="command")  # refused when it holds a run (--resume continues one)
    add_json(tr)


def _cmd_train(args: argparse.Namespace) -> int:
    from mesm.trained.precision import resolve_precision
    from mesm.training.config import load_run_config
    from mesm.training.fit import train

    out = Path(args.resume or args.out)
    config_path = args.config
    if args.resume and config_path is None:
        config_path = out / "config.yaml"
    config = load_run_config(config_path, args.set)
    if args.precision:  # recorded in the run folder, so --resume continues at it
        config = config.with_precision(args.precision)
    result = train(
        config,
        out,
        resume=bool(args.resume),
        enable_progress_bar=not args.no_progress,
        precision=resolve_precision(config.trainer.precision, config.trainer.accelerator),
    )
    from mesm.evaluation import format_table

    for split in ("valid", "test"):
        report = result.metrics.get(split)
        if report:
            print(format_table(report, f"{split} ({report['num_samples']} utterances)"))
    print(f"model: {result.checkpoint}\nrun folder: {result.run_dir}")
    if args.json:
        write_json(
            args.json,
            {"run_dir": result.run_dir, "checkpoint": result.checkpoint, **result.metrics},
        )
    return 0


def _add_evaluate(sub) -> None:
    ev = command(
        sub,
        "evaluate",
        _cmd_evaluate,
        help="per-emotion metrics of a checkpoint on a dataset split",
        description="Applies the checkpoint's validation-tuned thresholds to a split and prints "
        "accuracy (single-label) or weighted accuracy (multi-label), F1 and AUC per emotion.",
    )
    add_checkpoint(ev)
    add_dataset(ev, option=True)
    add_split(ev)
    add_batch_size(ev)
    add_workers(ev)
    add_device(ev)
    add_precision(ev)
    add_json(ev)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mesm.evaluation import format_table
    from mesm.inference.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        batch_size=args.batch_size,
        num_workers=workers(args),
        device=args.device,
        precision=precision(args, args.device),
    )
    print(format_table(report, f"{args.split} ({report['num_samples']} utterances)"))
    if args.json:
        write_json(args.json, report)
    return 0


def _add_export(sub) -> None:
    ex = command(
        sub,
        "export",
        _cmd_export,
        help="a checkpoint as a Hugging Face-style model folder (or a folder as one file)",
        description="Writes the model as a folder the Hugging Face Hub takes as is: config.json "
        "(model config, label names, thresholds, preprocessing, weight checksum), "
        "model.safetensors and a README.md model card; with --file, one self-contained "
        ".safetensors checkpoint instead. Both load with --checkpoint, identically.",
    )
    add_checkpoint(ex)
    ex.add_argument("out", metavar="OUT", help="the folder (or, with --file, the file) to write")
    ex.add_argument("--file", action="store_true", help="write one .safetensors file instead")
    add_json(ex)  # and --overwrite: an existing folder or file is replaced only with it
    # The files of a model folder (mesm.trained.checkpoint; not imported here: it loads torch).
    model_files = ("config.json", "model.safetensors", "README.md")
    declare_out(ex, flag="OUT", writes=model_files, file_when="file")


def _cmd_export(args: argparse.Namespace) -> int:
    from mesm.trained.checkpoint import load_model

    trained = load_model(args.checkpoint)
    written = trained.save(args.out) if args.file else trained.save_pretrained(args.out)
    files = [str(written)] if args.file else sorted(str(p) for p in written.iterdir())
    print("written: " + ", ".join(files))
    if args.json:
        write_json(args.json, {"source": args.checkpoint, "files": files})
    return 0


def _add_compare(sub) -> None:
    co = command(
        sub,
        "compare",
        _cmd_compare,
        help="one table of several runs in the paper's layout",
        description="Rows: the runs' models; columns: each emotion's Acc/F1 (or WAcc/F1) and the "
        "averages, from each RUN_DIR's metrics.json and config.yaml.",
    )
    co.add_argument("runs", nargs="+", metavar="RUN_DIR")
    co.add_argument("--split", default="test", choices=["valid", "test"], help="default: test")
    add_json(co)


def _cmd_compare(args: argparse.Namespace) -> int:
    from mesm.evaluation.compare import compare_records, compare_runs

    print(compare_runs(args.runs, split=args.split))
    if args.json:
        write_json(args.json, compare_records(args.runs, split=args.split))
    return 0


# The subcommands of this group, in the order `mesm --help` lists them.
COMMANDS = (_add_train, _add_evaluate, _add_export, _add_compare)
