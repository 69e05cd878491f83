"""Models and dataset splits for the analyses: from a checkpoint file or a model in memory.

Every analysis (FLOPs over a split, the top-p sweep, attention maps) starts the same way: a model
in eval mode, its dense FE2E twin with the same weights, batches of one split read with the
checkpoint's own preprocessing settings, and a way to run the model at another nucleus mass p.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader

from mesm.data.dataset import EmotionDataset
from mesm.errors import UsageError
from mesm.inference import evaluate
from mesm.inference.checkpoint import load_checkpoint
from mesm.inference.inputs import model_inputs
from mesm.inference.precision import Precision
from mesm.models import FE2E, ModelConfig, build_model
from mesm.models.attention import CrossModalAttention

ModelSource = str | os.PathLike | FE2E
_ATTENTION_PARAM = re.compile(r"(visual|audio)\.attention\.\d+\.")


def resolve_model(source: ModelSource) -> tuple[FE2E, dict[str, Any]]:
    """A model in eval mode and its checkpoint header.

    Args:
        source: a ``.safetensors`` checkpoint path, or a model (used as is, put in eval mode).

    Returns:
        (model, meta); meta is ``{}`` for a model given in memory.
    """
    if isinstance(source, FE2E):
        return source.eval(), {}
    return load_checkpoint(source)


def dense_twin(model: FE2E) -> FE2E:
    """The FE2E model with `model`'s weights (the model itself when it is already dense).

    MESM's parameters are FE2E's plus ``*.attention.*``, so the twin is built from the same config
    with ``arch="fe2e"`` and loads the state dict with only the attention layers left over.
    """
    if not model.config.mesm:
        return model
    # The text weights come from the state dict: never download or load pretrained ones here.
    config = ModelConfig.from_dict(
        {**model.config.to_dict(), "arch": "fe2e", "text_pretrained": False}
    )
    twin = build_model(config)
    result = twin.load_state_dict(model.state_dict(), strict=False)
    stray = [k for k in result.unexpected_keys if not _ATTENTION_PARAM.match(k)]
    if result.missing_keys or stray:
        raise ValueError(
            f"FE2E twin does not match the model (missing {result.missing_keys[:5]}, "
            f"unexpected {stray[:5]})"
        )
    device = next(model.parameters()).device
    return twin.to(device).eval()


def attention_layers(model: FE2E) -> dict[str, list[CrossModalAttention]]:
    """The cross-modal attention layers per pathway: {"visual"|"audio": [layer 0, 1, 2]}."""
    out = {}
    for name in ("visual", "audio"):
        pathway = getattr(model, name, None)
        if pathway is not None and pathway.sparse:
            out[name] = list(pathway.attention)
    return out


@contextmanager
def nucleus_mass(model: FE2E, p: float | None) -> Iterator[FE2E]:
    """Runs a MESM model at nucleus mass `p` inside the block, restoring its own p afterwards.

    Top-p reads only ``CrossModalAttention.p`` at forward time, so changing it is the same as
    rebuilding the model at that p with the same weights. ``None`` leaves the model unchanged.
    """
    layers = [a for group in attention_layers(model).values() for a in group]
    if p is None:
        yield model
        return
    if not layers:
        raise UsageError("only MESM has a nucleus mass p; this model is dense (FE2E)")
    if not p > 0:
        raise UsageError(f"p must be > 0, got {p}")
    previous = [a.p for a in layers]
    for a in layers:
        a.p = float(p)
    try:
        yield model
    finally:
        for a, old in zip(layers, previous, strict=True):
            a.p = old


def open_split(
    data_dir: str | os.PathLike,
    split: str | None,
    model: FE2E,
    meta: dict[str, Any] | None = None,
) -> EmotionDataset:
    """One split of a prepared dataset as the model was trained on it.

    Args:
        data_dir: the dataset folder.
        split: "train", "valid", "test", or None for every utterance.
        model: selects the tokenizer (its text model) and must have one output per label.
        meta: checkpoint header (see :func:`mesm.inference.evaluate.open_split`); None for a
            model that was never saved.

    Returns:
        The dataset.
    """
    meta = dict(meta or {})
    meta.setdefault("model", {"text_model": model.config.text_model})
    dataset = evaluate.open_split(data_dir, split, meta)
    if dataset.num_classes != model.config.num_classes:
        raise UsageError(
            f"{data_dir}: {dataset.num_classes} labels, the model has "
            f"{model.config.num_classes} outputs"
        )
    return dataset


def batches(dataset: EmotionDataset, batch_size: int) -> Iterator[dict[str, Any]]:
    """The split in order, as Batch dicts of at most `batch_size` utterances."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    yield from DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate)


def inputs_on(model: FE2E, batch: dict[str, Any]) -> dict[str, Tensor]:
    """The model's inputs of a batch, on the model's device."""
    device = next(model.parameters()).device
    return model_inputs(model, batch, device)


def predict(
    model: FE2E,
    dataset: EmotionDataset,
    batch_size: int = 8,
    precision: str | Precision | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid outputs (N, K) and 0/1 labels (N, K) of a whole split, in dataset order (at
    `precision`; None: the caller's autocast state)."""
    return evaluate.predict_split(model, dataset, batch_size=batch_size, precision=precision)
