"""`compare_runs`: several training runs in one table, laid out like the paper's Tables 2/3.

Rows are models, columns are emotions (each with Acc and F1, or WAcc and F1 for multi-label
data) plus the average. Each run folder is read, never written: ``metrics.json`` (as
`mesm.training.fit.train` writes it) and ``config.yaml`` (the resolved run config: the model's
arch, p and modalities name the row). FLOPs are not a training output: ``mesm flops
--checkpoint RUN/best.safetensors --data DATASET`` measures them on a split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mesm.errors import MissingInputError, UsageError

DISPLAY_NAMES = {
    "fe2e": "FE2E",
    "mesm": "MESM",
    "lf_lstm": "LF-LSTM",
    "lf_transformer": "LF-Transformer",
    "mult": "MulT",
    "emoembs": "EmoEmbs",
}


def _read_run(run_dir: Path, split: str) -> tuple[str, dict[str, Any]]:
    metrics_file, config_file = run_dir / "metrics.json", run_dir / "config.yaml"
    if not metrics_file.is_file():
        raise MissingInputError(f"{run_dir}: no metrics.json (is this a finished run folder?)")
    metrics = json.loads(metrics_file.read_text())
    report = metrics.get(split)
    if not report:
        raise UsageError(f"{metrics_file}: no {split!r} report")
    model: dict[str, Any] = {}
    if config_file.is_file():
        model = (yaml.safe_load(config_file.read_text()) or {}).get("model") or {}
    arch = str(model.get("arch", "fe2e"))
    name = DISPLAY_NAMES.get(arch, arch)
    if model.get("arch") == "mesm" and "p" in model:
        name += f" (p={model['p']})"
    mods = model.get("modalities")
    if mods and set(mods) != set("tav"):
        name += f" [{mods}]"
    return name, report


def compare_runs(run_dirs: Sequence[str | os.PathLike], split: str = "test") -> str:
    """One plain-text table of several runs on one split.

    Args:
        run_dirs: run folders written by `mesm train`.
        split: "test" (default) or "valid".

    Returns:
        The table: a header of emotions, a header of metrics (Acc|WAcc, F1 per emotion, then
        the average), one row per run with percentages ("-" where undefined).

    Raises:
        MissingInputError: a folder without metrics.json.
        UsageError: no runs, a run without the split, or runs on different emotions/tasks.
    """
    if not run_dirs:
        raise UsageError("compare_runs needs at least one run folder")
    runs = [(Path(d), *_read_run(Path(d), split)) for d in run_dirs]
    first = runs[0][2]
    emotions, metric = list(first["per_emotion"]), first["metric"]
    for path, _, report in runs[1:]:
        if list(report["per_emotion"]) != emotions or report["metric"] != metric:
            raise UsageError(f"{path}: emotions/metric differ from {runs[0][0]}'s")
    names = [name for _, name, _ in runs]
    # Two runs of one model: tell them apart by their folders.
    names = [
        f"{n} ({path.name})" if names.count(n) > 1 else n
        for n, (path, *_rest) in zip(names, runs, strict=True)
    ]
    label = "Acc" if metric == "acc" else "WAcc"
    width = max(len(n) for n in [*names, "Model"])
    groups = [*emotions, "Average"]
    cell = 6
    head1 = f"{'':<{width}}" + "".join(f" {g[: 2 * cell + 1]:^{2 * cell + 1}}" for g in groups)
    head2 = f"{'Model':<{width}}" + f" {label:>{cell}} {'F1':>{cell}}" * len(groups)
    lines = [f"{split} split", head1.rstrip(), head2, "-" * len(head2)]
    for name, (_, _, report) in zip(names, runs, strict=True):
        rows = [report["per_emotion"][e] for e in emotions] + [report["average"]]
        cells = "".join(f" {_pct(r.get(metric))} {_pct(r.get('f1'))}" for r in rows)
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


def _pct(value: float | None, cell: int = 6) -> str:
    if value is None or value != value:
        return f"{'-':>{cell}}"
    return f"{100 * value:>{cell}.1f}"


def compare_records(
    run_dirs: Sequence[str | os.PathLike], split: str = "test"
) -> list[dict[str, Any]]:
    """What `compare_runs` tabulates, one dict per run: ``run`` (the folder), ``name`` (the row
    label) and ``report`` (the split's report from metrics.json)."""
    return [
        {"run": str(d), **dict(zip(("name", "report"), _read_run(Path(d), split), strict=True))}
        for d in run_dirs
    ]
