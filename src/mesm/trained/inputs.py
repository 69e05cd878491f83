"""A model's inputs taken from a Batch: the keys come from the model (``model.input_keys``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def model_inputs(
    model: nn.Module, batch: dict[str, Any], device: str | torch.device | None = None
) -> dict[str, Tensor]:
    """The batch entries `model` reads, moved to `device` (None: the model's own device).

    Args:
        model: FE2E, MESM or a baseline (anything with ``input_keys``).
        batch: a collated Batch (end-to-end tensors or a baseline's ``*_feats``).
        device: where the tensors go.

    Raises:
        KeyError: naming the keys the batch lacks (e.g. a feature batch given to FE2E).
    """
    keys = model.input_keys
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"the batch has no {missing} (the model reads {list(keys)})")
    if device is None:
        device = next(model.parameters()).device
    return {k: batch[k].to(device) for k in keys}
