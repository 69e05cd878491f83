"""Accuracy, F1 and feature-extraction cost of a trained MESM as the nucleus mass p varies.

The paper's figure (Dai et al. 2021, figure 3) evaluates one trained MESM at several p: for each p
the per-emotion thresholds are tuned on the validation split at that p and applied unchanged to
the test split, and the feature-extraction GFLOPs per utterance are measured on the test split.
FE2E with the same weights is the reference (a horizontal line in each panel).

Changing p needs no retraining: top-p reads the model's p (``MESM.set_p``) at forward time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mesm.analysis.flops import average_feature_flops
from mesm.data.media.dataset import EmotionDataset
from mesm.errors import UsageError
from mesm.evaluation import evaluate, json_safe, tune_thresholds
from mesm.files import atomic_target, atomic_write_json
from mesm.inference.evaluate import open_split, predict_split, split_batches
from mesm.models import EmotionModel
from mesm.models.config import check_p
from mesm.trained.checkpoint import load_model
from mesm.trained.inputs import model_inputs
from mesm.trained.precision import Precision, resolve_precision

DEFAULT_PS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _point(
    model: EmotionModel,
    valid: EmotionDataset,
    test: EmotionDataset,
    label_names: list[str],
    task: str,
    batch_size: int,
) -> dict[str, Any]:
    """Thresholds tuned on valid, metrics on test, FLOPs on test, for the model as it is now."""
    valid_probs, valid_labels = predict_split(model, valid, batch_size=batch_size)
    thresholds = tune_thresholds(valid_probs, valid_labels)
    test_probs, test_labels = predict_split(model, test, batch_size=batch_size)
    report = evaluate(test_probs, test_labels, thresholds, label_names, task)
    flops = average_feature_flops(
        model, (model_inputs(model, b) for b in split_batches(test, batch_size))
    )
    g = flops["gflops_per_utterance"]
    return {
        **{m: report["average"][m] for m in (report["metric"], "f1", "auc")},
        "gflops_per_utterance": g["features"],
        "attention_gflops_per_utterance": g["attention"],
        "sites_kept": flops["sites_kept"],
        "thresholds": [float(t) for t in thresholds],
    }


@torch.inference_mode()
def sweep_p(
    checkpoint: str | os.PathLike | EmotionModel,
    data_dir: str | os.PathLike,
    ps: Sequence[float] = DEFAULT_PS,
    split: str = "test",
    valid_split: str = "valid",
    *,
    batch_size: int = 8,
    out_dir: str | os.PathLike | None = None,
    precision: str | Precision = "auto",
) -> dict[str, Any]:
    """Evaluates a trained MESM at each nucleus mass p, and its FE2E twin once.

    Args:
        checkpoint: a MESM ``.safetensors`` checkpoint (or a MESM model in memory).
        data_dir: the prepared dataset folder.
        ps: nucleus masses to evaluate (each > 0; p >= 1 keeps every site).
        split: the split reported (metrics and FLOPs).
        valid_split: the split thresholds are tuned on, at each p.
        batch_size: utterances per forward pass.
        out_dir: if given, also writes ``sweep.json`` and ``sweep.png`` there.
        precision: what the models run at ("auto", "32", "bf16"; see
            :mod:`mesm.trained.precision`).

    Returns:
        {"source", "data", "split", "valid_split", "task", "metric" ("acc" or "wacc"),
        "precision" (Lightning's name of what ran),
        "gating", "trained_p", "num_utterances", "points": [{"p", <metric>, "f1", "auc",
        "gflops_per_utterance", "attention_gflops_per_utterance", "sites_kept", "thresholds"}],
        "fe2e": {<metric>, "f1", "auc", "gflops_per_utterance", "thresholds"}, "files"}.
        Metrics are averages over emotions in [0, 1]; GFLOPs are the feature extractors' per
        utterance of the reported split, attention layers separate.
    """
    trained = load_model(checkpoint)
    model, meta = trained.model, trained.meta
    if not model.config.mesm:
        raise UsageError("sweep_p needs a MESM model: FE2E has no nucleus mass to vary")
    ps = sorted(check_p(p) for p in ps)
    if not ps:
        raise UsageError("sweep_p needs at least one p")
    valid = open_split(data_dir, valid_split, trained)
    test = open_split(data_dir, split, trained)
    label_names = list(test.label_names)
    task = meta.get("task", test.info.task)
    metric = "acc" if task == "single_label" else "wacc"
    resolved = resolve_precision(precision, next(model.parameters()).device)
    points = []
    with resolved.autocast():
        for p in ps:
            with model.using_p(p):
                point = _point(model, valid, test, label_names, task, batch_size)
            points.append({"p": p, **point})
        fe2e = _point(model.dense_twin(), valid, test, label_names, task, batch_size)
    for key in ("attention_gflops_per_utterance", "sites_kept"):
        fe2e.pop(key)
    result: dict[str, Any] = json_safe(
        {
            "source": trained.source,
            "data": str(data_dir),
            "split": split,
            "valid_split": valid_split,
            "task": task,
            "metric": metric,
            "precision": resolved.lightning,
            "gating": model.config.gating,
            "trained_p": model.config.p,
            "num_utterances": len(test),
            "points": points,
            "fe2e": fe2e,
            "files": {},
        }
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result["files"] = {"json": str(out / "sweep.json"), "png": str(out / "sweep.png")}
        plot_sweep(result, out / "sweep.png")
        atomic_write_json(out / "sweep.json", result)
    return result


def plot_sweep(
    result: dict[str, Any], png_path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Draws a :func:`sweep_p` result like the paper's figure, as a PNG.

    Two panels share the p axis: average accuracy (or weighted accuracy) and F1 above, feature-
    extraction GFLOPs per utterance below; FE2E is a dashed horizontal line in each.

    Args:
        result: what :func:`sweep_p` returned (or its JSON, loaded).
        png_path: the file to write.
        title: figure title (default: names the split and the number of utterances).

    Returns:
        The path written.
    """
    # The Agg canvas directly: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = result["metric"]
    label = {"acc": "accuracy", "wacc": "weighted accuracy"}[metric]
    points = result["points"]
    ps = np.array([pt["p"] for pt in points])
    fe2e = result["fe2e"]

    def column(key: str, scale: float = 1.0) -> np.ndarray:
        return np.array([np.nan if pt[key] is None else scale * pt[key] for pt in points])

    fig = Figure(figsize=(6.4, 6.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for key, name, colour, marker in ((metric, label, "C0", "o"), ("f1", "F1", "C1", "s")):
        top.plot(ps, column(key, 100), marker=marker, color=colour, label=f"MESM {name}")
        if fe2e.get(key) is not None:
            top.axhline(100 * fe2e[key], color=colour, linestyle="--", label=f"FE2E {name}")
    top.set_ylabel("average over emotions (%)")
    top.legend(loc="lower right", fontsize="small")
    top.grid(alpha=0.3)

    bottom.plot(ps, column("gflops_per_utterance"), marker="o", color="C2", label="MESM")
    with_attention = column("gflops_per_utterance") + column("attention_gflops_per_utterance")
    bottom.plot(ps, with_attention, linestyle=":", color="C2", label="MESM + attention layers")
    bottom.axhline(fe2e["gflops_per_utterance"], color="C3", linestyle="--", label="FE2E")
    bottom.set_ylabel("feature extraction\nGFLOPs / utterance")
    bottom.set_xlabel("p (nucleus mass kept by each cross-modal attention layer)")
    bottom.set_xticks(ps)
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="lower right", fontsize="small")
    bottom.grid(alpha=0.3)
    fig.suptitle(
        title
        or f"MESM top-p sweep: {result['split']} split, {result['num_utterances']} utterances "
        f"(thresholds tuned on {result['valid_split']} at each p)",
        fontsize="medium",
    )
    path = Path(png_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path
