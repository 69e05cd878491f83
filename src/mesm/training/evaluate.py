"""`evaluate_checkpoint`: a saved model on a dataset split, with its saved thresholds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mesm.data.cache import PreprocessSettings
from mesm.data.dataset import EmotionDataset
from mesm.data.feature_dataset import FeatureDataset
from mesm.data.features import FeatureSettings
from mesm.evaluation import evaluate
from mesm.models import BASELINE_ARCHS
from mesm.training.checkpoint import load_checkpoint
from mesm.training.module import model_inputs


@torch.no_grad()
def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "test",
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
) -> dict:
    """Per-emotion metrics of a checkpoint on one split of a prepared dataset.

    The checkpoint's own preprocessing settings select the feature cache and its tuned thresholds
    are applied unchanged, as in the paper (thresholds come from the validation split).

    Returns:
        The :func:`mesm.evaluation.evaluate` report plus "checkpoint", "data" and "split".
    """
    model, meta = load_checkpoint(checkpoint, map_location=device)
    if meta["model"].get("arch") in BASELINE_ARCHS:
        # A baseline's "preprocessing" header holds the FeatureSettings of its feature cache.
        dataset = FeatureDataset(
            data, split, settings=FeatureSettings.from_dict(meta["preprocessing"])
        )
    else:
        settings = PreprocessSettings(**meta["preprocessing"]) if meta["preprocessing"] else None
        dataset = EmotionDataset(
            data,
            split,
            settings=settings,
            text_model=meta["model"].get("text_model"),
            max_text_length=meta["extra"].get("max_text_length", 100),
        )
    if list(dataset.label_names) != meta["label_names"]:
        raise ValueError(
            f"{data}: labels {list(dataset.label_names)} differ from the checkpoint's "
            f"{meta['label_names']}"
        )
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=dataset.collate
    )
    probs, labels = [], []
    for batch in loader:
        inputs = {k: v.to(device) for k, v in model_inputs(batch, model.modalities).items()}
        probs.append(torch.sigmoid(model(**inputs)).cpu())
        labels.append(batch["labels"])
    thresholds = meta["thresholds"] or [0.5] * len(meta["label_names"])
    report = evaluate(
        torch.cat(probs).numpy(),
        torch.cat(labels).numpy().round(),
        np.asarray(thresholds),
        meta["label_names"],
        meta["task"],
    )
    return {**report, "checkpoint": str(Path(checkpoint)), "data": str(Path(data)), "split": split}
