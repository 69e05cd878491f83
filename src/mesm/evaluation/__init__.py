"""The paper's metrics, pure functions on arrays: thresholds tuned on valid, per-emotion tables."""

from mesm.evaluation.metrics import (
    THRESHOLD_GRID,
    Confusion,
    auc,
    decide,
    evaluate,
    format_table,
    json_safe,
    tune_thresholds,
)

__all__ = [
    "THRESHOLD_GRID",
    "Confusion",
    "auc",
    "decide",
    "evaluate",
    "format_table",
    "json_safe",
    "tune_thresholds",
]
