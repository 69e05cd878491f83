"""The paper's evaluation: per emotion one-vs-rest on sigmoid outputs, thresholds tuned on valid.

Definitions (per emotion, from binary predictions ``pred = prob > threshold``, strictly above and
in float32 on both sides as in the paper's evaluation code: `decide` is that one comparison):

======================  =============================================================
accuracy                (TP + TN) / (P + N)                       (IEMOCAP)
weighted accuracy       (TP · N / P + TN) / (2N) = (TPR + TNR) / 2 (CMU-MOSEI); with no
                        positives it is TNR, with no negatives TPR
F1                      2TP / (2TP + FP + FN); 0 when that denominator is 0
AUC                     area under the ROC curve of the probabilities (Mann-Whitney U with
                        tied scores counted one half); NaN when only one class is present
======================  =============================================================

Thresholds come from the grid {0.05, 0.10, ..., 0.95}; each emotion takes the threshold that
maximises its F1 on the validation split (ties → the lowest threshold) and applies it unchanged
to the test split. Averages are plain means over emotions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

THRESHOLD_GRID = np.round(np.arange(1, 20) * 0.05, 2)
Task = Literal["single_label", "multi_label"]


@dataclass(frozen=True)
class Confusion:
    """Binary confusion counts of one emotion."""

    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def of(cls, pred: np.ndarray, label: np.ndarray) -> Confusion:
        pred, label = pred.astype(bool), label.astype(bool)
        return cls(
            tp=int((pred & label).sum()),
            fp=int((pred & ~label).sum()),
            tn=int((~pred & ~label).sum()),
            fn=int((~pred & label).sum()),
        )

    @property
    def accuracy(self) -> float:
        total = self.tp + self.fp + self.tn + self.fn
        return (self.tp + self.tn) / total if total else float("nan")

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    @property
    def weighted_accuracy(self) -> float:
        pos, neg = self.tp + self.fn, self.tn + self.fp
        if pos and neg:
            return (self.tp * neg / pos + self.tn) / (2 * neg)
        if neg:
            return self.tn / neg
        if pos:
            return self.tp / pos
        return float("nan")


def decide(
    probs: np.ndarray | Sequence[float], thresholds: np.ndarray | Sequence[float]
) -> np.ndarray:
    """The decisions "present": probability strictly above its threshold, both in float32.

    The model's probabilities are float32; a float64 threshold such as 0.4 lies just below
    float32(0.4), so comparing in float64 would call a probability equal to its threshold
    present, where the paper's evaluation (float32 on both sides, strictly above) does not.

    Args:
        probs: (..., K) probabilities (or one emotion's (N,) with a scalar threshold).
        thresholds: (K,) thresholds, broadcast against `probs`.

    Returns:
        bool array of `probs`' shape.
    """
    return np.asarray(probs, dtype=np.float32) > np.asarray(thresholds, dtype=np.float32)


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.ndim != 2 or probs.shape != labels.shape:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be (N, K)")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities contain NaN or infinity")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return probs, labels.astype(bool)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of one emotion; (N,) scores and (N,) 0/1 labels."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = np.asarray(scores)[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def tune_thresholds(
    probs: np.ndarray, labels: np.ndarray, grid: Sequence[float] = tuple(THRESHOLD_GRID)
) -> np.ndarray:
    """Per-emotion threshold maximising F1 on (validation) data.

    Args:
        probs: (N, K) sigmoid outputs.
        labels: (N, K) 0/1 targets.
        grid: candidate thresholds, tried in increasing order.

    Returns:
        (K,) thresholds; on ties the lowest candidate wins.
    """
    probs, labels = _check(probs, labels)
    grid = np.sort(np.asarray(grid, dtype=np.float64))
    best = np.empty(probs.shape[1])
    for k in range(probs.shape[1]):
        f1s = [Confusion.of(decide(probs[:, k], t), labels[:, k]).f1 for t in grid]
        best[k] = grid[int(np.argmax(f1s))]  # argmax returns the first (lowest) maximum
    return best


def evaluate(
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    label_names: Sequence[str],
    task: Task = "single_label",
) -> dict:
    """Per-emotion table and averages, as in the paper.

    Args:
        probs: (N, K) sigmoid outputs of the split being evaluated.
        labels: (N, K) 0/1 targets.
        thresholds: (K,) from :func:`tune_thresholds` on the validation split.
        label_names: K emotion names.
        task: "single_label" (IEMOCAP: accuracy) or "multi_label" (CMU-MOSEI: weighted
            accuracy), as in the dataset header.

    Returns:
        {"task", "metric", "per_emotion": {name: {"acc"|"wacc", "f1", "auc", "threshold",
        "positives"}}, "average": {"acc"|"wacc", "f1", "auc"}, "num_samples"}.
    """
    probs, labels = _check(probs, labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if len(label_names) != probs.shape[1] or thresholds.shape != (probs.shape[1],):
        raise ValueError(
            f"{probs.shape[1]} columns, {len(label_names)} names, {thresholds.shape} thresholds"
        )
    if task not in ("single_label", "multi_label"):
        raise ValueError(f"task must be 'single_label' or 'multi_label', got {task!r}")
    metric = "acc" if task == "single_label" else "wacc"
    per: dict[str, dict[str, float]] = {}
    for k, name in enumerate(label_names):
        conf = Confusion.of(decide(probs[:, k], thresholds[k]), labels[:, k])
        per[name] = {
            metric: conf.accuracy if metric == "acc" else conf.weighted_accuracy,
            "f1": conf.f1,
            "auc": auc(probs[:, k], labels[:, k]),
            "threshold": float(thresholds[k]),
            "positives": int(labels[:, k].sum()),
        }
    average = {m: _mean([row[m] for row in per.values()]) for m in (metric, "f1", "auc")}
    report = {
        "task": task,
        "metric": metric,
        "per_emotion": per,
        "average": average,
        "num_samples": int(probs.shape[0]),
    }
    if task == "single_label":
        # Not one of the paper's numbers, but the usual one for single-label data: the most
        # probable emotion is the true one (chance is 1/K for balanced classes).
        hits = probs.argmax(1) == labels.argmax(1)
        report["top1_accuracy"] = float(hits.mean()) if len(hits) else float("nan")
    return report


def _mean(values: list[float]) -> float:
    """Mean over the defined values (AUC is NaN for an emotion absent from the split)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def format_table(report: dict, title: str = "") -> str:
    """A plain-text table shaped like the paper's (rows: metrics, columns: emotions + average)."""
    names = list(report["per_emotion"])
    metric = report["metric"]
    width = max(8, *(len(n) for n in names))
    head = f"{'':<6}" + "".join(f"{n:>{width + 1}}" for n in [*names, "average"])
    lines = [title] if title else []
    lines.append(head)
    for m, label in ((metric, "Acc" if metric == "acc" else "WAcc"), ("f1", "F1"), ("auc", "AUC")):
        cells = [report["per_emotion"][n][m] for n in names] + [report["average"][m]]
        lines.append(f"{label:<6}" + "".join(f"{100 * v:>{width + 1}.1f}" for v in cells))
    return "\n".join(lines)


def json_safe(value: Any) -> Any:
    """A copy of a report with NaN (e.g. the AUC of an emotion absent from a split) as None,
    so that it is valid JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
