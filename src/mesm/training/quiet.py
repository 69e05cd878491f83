"""What `train` passes to Lightning so that a run prints only what a user can act on.

Lightning's own defaults and notices are addressed one by one, at their source:

- ``limit_train_batches`` / ``limit_val_batches`` are passed only when they differ from "all
  batches": given explicitly, even at their default, Lightning announces them.
- ``log_every_n_steps`` is capped at the number of training batches per epoch, where Lightning
  would otherwise warn that no step of the epoch is ever logged.
- Notices about Lightning itself, not about the run, are dropped by message: the tip to install
  its cloud logger, the GPU/TPU inventory and the mixed-precision line (mesm prints the precision
  and device it trains with), the DataLoader worker-count suggestion (it names a DataLoader
  argument; mesm's is ``data.num_workers``), the FutureWarning raised by Lightning's own use of
  a torch pytree API that torch deprecated, and "Checkpoint directory ... exists and is not empty"
  (`train` itself refuses a used run folder unless resuming, when the folder is meant to hold
  checkpoints). Each filter matches one message; every other warning and log line comes through.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

# Log lines (Lightning's `rank_zero_info`) that say nothing about the run.
_NOTICES = (
    "💡 Tip:",
    "GPU available:",
    "TPU available:",
    "Using bfloat16 Automatic Mixed Precision",
    "Using 16bit Automatic Mixed Precision",
)
# Warnings about how Lightning, not mesm, calls its dependencies: (category, message regex).
_WARNINGS = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    (UserWarning, r"The '\w+' does not have many workers"),
    (UserWarning, r"Checkpoint directory .* exists and is not empty"),
)
_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOTICES)


def silence_lightning_notices() -> None:
    """Installs the message filters described in the module docstring (idempotent)."""
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices())
    for category, message in _WARNINGS:
        # An identical filter is replaced, not added again.
        warnings.filterwarnings("ignore", message=message, category=category)


def batch_limits(limit_train_batches: float | int, limit_val_batches: float | int) -> dict:
    """The ``limit_*_batches`` Trainer arguments that differ from Lightning's "all batches"."""
    limits = {"limit_train_batches": limit_train_batches, "limit_val_batches": limit_val_batches}
    return {k: v for k, v in limits.items() if not (isinstance(v, float) and v == 1.0)}


def log_interval(log_every_n_steps: int, num_train: int, batch_size: int, limit: Any) -> int:
    """`log_every_n_steps`, capped at the training batches of one epoch (at least 1).

    Args:
        log_every_n_steps: the configured interval.
        num_train: training utterances.
        batch_size: utterances per batch.
        limit: ``limit_train_batches`` (a fraction as float, or a number of batches as int).
    """
    batches = math.ceil(num_train / batch_size)
    if isinstance(limit, float):
        batches = int(batches * limit)
    else:
        batches = min(batches, int(limit))
    return max(1, min(log_every_n_steps, batches))
