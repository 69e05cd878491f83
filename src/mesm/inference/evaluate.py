"""A trained model on a dataset split: `open_split`, `predict_split`, `evaluate_checkpoint`."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mesm.data.errors import DataError
from mesm.data.handcrafted.dataset import FeatureDataset
from mesm.data.handcrafted.features import FeatureSettings
from mesm.data.media.dataset import EmotionDataset
from mesm.errors import UsageError
from mesm.evaluation import evaluate
from mesm.models import BASELINE_ARCHS
from mesm.trained.checkpoint import TrainedModel, load_model, preprocessing_settings
from mesm.trained.inputs import model_inputs
from mesm.trained.precision import Precision, resolve_precision


def open_split(
    data: str | os.PathLike,
    split: str | None,
    trained: TrainedModel,
) -> EmotionDataset | FeatureDataset:
    """One split of a prepared dataset, read as the model was trained on it.

    Args:
        data: the dataset folder.
        split: "train", "valid", "test", or None for every utterance.
        trained: the model and its header: the header's preprocessing settings select the
            cache, the model's text model and the header's ``max_text_length`` the tokenisation;
            its label names, when recorded, must be the dataset's, and the model must have one
            output per label. (A model never saved has an empty header: the defaults.)

    Returns:
        An `EmotionDataset`, or a `FeatureDataset` for the two-phase baselines.
    """
    meta, config = trained.meta, trained.model.config
    if config.arch in BASELINE_ARCHS:
        # A baseline's "preprocessing" header holds the FeatureSettings of its feature cache.
        settings = FeatureSettings.from_dict(meta.get("preprocessing") or {})
        dataset = FeatureDataset(data, split, settings=settings)
    else:
        dataset = EmotionDataset(
            data,
            split,
            settings=preprocessing_settings(meta),
            text_model=config.text_model,
            max_text_length=meta.get("extra", {}).get("max_text_length", 100),
        )
    if meta.get("label_names") and list(dataset.label_names) != meta["label_names"]:
        raise UsageError(
            f"{data}: labels {list(dataset.label_names)} differ from the checkpoint's "
            f"{meta['label_names']}"
        )
    if dataset.num_classes != config.num_classes:
        raise UsageError(
            f"{data}: {dataset.num_classes} labels, the model has {config.num_classes} outputs"
        )
    return dataset


def split_batches(
    dataset: EmotionDataset | FeatureDataset, batch_size: int = 8, num_workers: int = 0
) -> DataLoader:
    """The split in dataset order, as collated Batch dicts of at most `batch_size` utterances."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    return DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=dataset.collate
    )


@torch.inference_mode()
def predict_split(
    model: nn.Module,
    dataset: EmotionDataset | FeatureDataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    precision: Precision | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid outputs and labels of a whole split, in dataset order.

    Args:
        model: the model, in eval mode.
        dataset: the split.
        batch_size: utterances per forward pass.
        num_workers: data-loading processes.
        precision: run the model at this resolved precision (see
            :mod:`mesm.trained.precision`); None: as the caller has set it up.

    Returns:
        probs (N, K) float and labels (N, K) 0/1.

    Raises:
        DataError: naming the utterances whose outputs are NaN or infinite.
    """
    device = next(model.parameters()).device
    probs, labels = [], []
    for batch in split_batches(dataset, batch_size, num_workers):
        inputs = model_inputs(model, batch, device)
        with nullcontext() if precision is None else precision.autocast():
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
    `precision` ("auto", "32", "bf16", ...; see :mod:`mesm.trained.precision`) is what the
    model runs at.

    Returns:
        The :func:`mesm.evaluation.evaluate` report plus "checkpoint", "data", "split" and
        "precision" (Lightning's name of what ran: "32-true", "bf16-mixed", "16-mixed").
    """
    resolved = resolve_precision(precision, device)
    trained = load_model(checkpoint, device=device)
    dataset = open_split(data, split, trained)
    probs, labels = predict_split(
        trained.model, dataset, batch_size=batch_size, num_workers=num_workers, precision=resolved
    )
    report = evaluate(
        probs, labels, np.asarray(trained.thresholds), trained.label_names, trained.task
    )
    return {
        **report,
        "checkpoint": str(Path(checkpoint)),
        "data": str(Path(data)),
        "split": split,
        "precision": resolved.lightning,
    }
