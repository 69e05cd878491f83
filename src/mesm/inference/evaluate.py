"""`evaluate_checkpoint`: a saved model on a dataset split, with its saved thresholds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mesm.data.dataset import EmotionDataset
from mesm.data.errors import DataError
from mesm.data.feature_dataset import FeatureDataset
from mesm.data.features import FeatureSettings
from mesm.errors import UsageError
from mesm.evaluation import evaluate
from mesm.inference.checkpoint import load_checkpoint, preprocessing_settings
from mesm.inference.inputs import model_inputs
from mesm.inference.precision import Precision, autocast, resolve_precision
from mesm.models import BASELINE_ARCHS


def open_split(
    data: str | os.PathLike,
    split: str | None,
    meta: dict[str, Any],
) -> EmotionDataset | FeatureDataset:
    """One split of a prepared dataset, read as the checkpoint's model was trained on it.

    Args:
        data: the dataset folder.
        split: "train", "valid", "test", or None for every utterance.
        meta: a checkpoint header (:func:`mesm.inference.checkpoint.read_checkpoint_meta`); its
            preprocessing settings select the cache, its text model and ``max_text_length`` the
            tokenisation; its label names, when present, must be the dataset's. ``{}`` = the
            defaults (a model that was never saved).

    Returns:
        An `EmotionDataset`, or a `FeatureDataset` for the two-phase baselines.
    """
    model = meta.get("model", {})
    if model.get("arch") in BASELINE_ARCHS:
        # A baseline's "preprocessing" header holds the FeatureSettings of its feature cache.
        settings = FeatureSettings.from_dict(meta.get("preprocessing") or {})
        dataset = FeatureDataset(data, split, settings=settings)
    else:
        dataset = EmotionDataset(
            data,
            split,
            settings=preprocessing_settings(meta),
            text_model=model.get("text_model"),
            max_text_length=meta.get("extra", {}).get("max_text_length", 100),
        )
    if meta.get("label_names") and list(dataset.label_names) != meta["label_names"]:
        raise UsageError(
            f"{data}: labels {list(dataset.label_names)} differ from the checkpoint's "
            f"{meta['label_names']}"
        )
    return dataset


@torch.inference_mode()
def predict_split(
    model: nn.Module,
    dataset: EmotionDataset | FeatureDataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    precision: str | Precision | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid outputs and labels of a whole split, in dataset order.

    Args:
        model: the model, in eval mode.
        dataset: the split.
        batch_size: utterances per forward pass.
        num_workers: data-loading processes.
        precision: run the model at this precision (see :mod:`mesm.inference.precision`);
            None: as the caller has set it up.

    Returns:
        probs (N, K) float and labels (N, K) 0/1.

    Raises:
        DataError: naming the utterances whose outputs are NaN or infinite.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=dataset.collate
    )
    probs, labels = [], []
    for batch in loader:
        inputs = model_inputs(model, batch, device)
        with autocast(precision, device):
            logits = model(**inputs)
        out = torch.sigmoid(logits.float()).cpu()
        bad = [uid for uid, row in zip(batch["ids"], out, strict=True) if not row.isfinite().all()]
        if bad:
            # NaN/inf features (or weights) give NaN outputs: name where, not a metric's complaint.
            raise DataError(
                f"{getattr(dataset, 'root', '')}: non-finite model outputs for utterance(s) "
                f"{bad[:10]} (NaN or infinite values in their features)"
            )
        probs.append(out)
        labels.append(batch["labels"])
    return torch.cat(probs).numpy(), torch.cat(labels).numpy().round()


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "test",
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
    precision: str | Precision = "auto",
) -> dict:
    """Per-emotion metrics of a checkpoint on one split of a prepared dataset.

    The checkpoint's own preprocessing settings select the feature cache and its tuned thresholds
    are applied unchanged, as in the paper (thresholds come from the validation split).
    `precision` ("auto", "32", "bf16", ...; see :mod:`mesm.inference.precision`) is what the
    model runs at.

    Returns:
        The :func:`mesm.evaluation.evaluate` report plus "checkpoint", "data", "split" and
        "precision" (Lightning's name of what ran: "32-true", "bf16-mixed", "16-mixed").
    """
    resolved = resolve_precision(precision, device)
    model, meta = load_checkpoint(checkpoint, map_location=device)
    dataset = open_split(data, split, meta)
    probs, labels = predict_split(
        model, dataset, batch_size=batch_size, num_workers=num_workers, precision=resolved
    )
    thresholds = meta["thresholds"] or [0.5] * len(meta["label_names"])
    report = evaluate(probs, labels, np.asarray(thresholds), meta["label_names"], meta["task"])
    return {
        **report,
        "checkpoint": str(Path(checkpoint)),
        "data": str(Path(data)),
        "split": split,
        "precision": resolved.lightning,
    }
