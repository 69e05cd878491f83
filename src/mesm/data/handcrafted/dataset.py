"""`FeatureDataset` + `collate_features`: hand-crafted feature sequences as padded batches.

Batch contract (the baselines' inputs): ``{text,audio,visual}_feats`` (B, T, D) float32, zero
at padding; ``{text,audio,visual}_mask`` (B, T) bool, True = valid; ``labels`` (B, K) float32
multi-hot; ``ids``, B strings.
"""

from __future__ import annotations

import os
from typing import TypedDict

import torch

from mesm.data.handcrafted.features import FeatureSettings, FeatureStore
from mesm.data.media.dataset import LabelledUtterances


class FeatureItem(TypedDict):
    """One utterance's feature sequences (before batching)."""

    id: str
    audio: torch.Tensor  # (Ta, Da) float32
    visual: torch.Tensor  # (Tv, Dv) float32
    text: torch.Tensor  # (Lt, Dt) float32
    labels: torch.Tensor  # (K,) float32 multi-hot


class FeatureBatch(TypedDict):
    """Padded feature sequences with masks (see the module docstring)."""

    audio_feats: torch.Tensor
    audio_mask: torch.Tensor
    visual_feats: torch.Tensor
    visual_mask: torch.Tensor
    text_feats: torch.Tensor
    text_mask: torch.Tensor
    labels: torch.Tensor
    ids: list[str]


class FeatureDataset(LabelledUtterances):
    """Utterances of a dataset folder, read from its hand-crafted feature cache.

    Args:
        dataset_dir: the dataset folder.
        split: "train", "valid", "test" or None for every record.
        settings: the feature settings selecting the cache (default: the documented ones).

    Attributes:
        info: the dataset header (label names, task).
        records: the selected utterances.
        cache: the `FeatureStore` read from.
        dims: {"audio_dim", "visual_dim", "text_dim"} of the cached features.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        split: str | None = None,
        *,
        settings: FeatureSettings | None = None,
    ) -> None:
        # Features replace the media: imported feature sets have no media files at all.
        super().__init__(dataset_dir, split, check_files=False)
        self.cache = FeatureStore(self.root, settings)
        self.dims = self.cache.dims()

    def model_overrides(self) -> dict[str, object]:
        """Model config fields this data fixes: the feature widths and the label names."""
        return {**self.dims, "label_names": list(self.label_names)}

    def __getitem__(self, index: int) -> FeatureItem:
        record = self.records[index]
        entry = self.cache.load(record.id)
        return FeatureItem(
            id=record.id,
            audio=entry["audio"],
            visual=entry["visual"],
            text=entry["text"],
            labels=self.labels[index],
        )

    def collate(self, items: list[FeatureItem]) -> FeatureBatch:
        """`collate_features` (pass as DataLoader `collate_fn`)."""
        return collate_features(items)


def pad_feature_sequences(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """B tensors (T_i, D) → padded (B, T_max, D) float32 with zeros and mask (B, T_max) bool."""
    width = seqs[0].shape[1]
    t_max = max(s.shape[0] for s in seqs)
    out = torch.zeros(len(seqs), t_max, width)
    mask = torch.zeros(len(seqs), t_max, dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s.shape[1] != width:
            raise ValueError(f"feature widths differ in one batch: {s.shape[1]} vs {width}")
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return out, mask


def collate_features(items: list[FeatureItem]) -> FeatureBatch:
    """Pad each modality's sequences to the longest in the batch.

    Args:
        items: B items from `FeatureDataset`.

    Returns:
        The batch (see the module docstring).
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    padded = {
        m: pad_feature_sequences([it[m] for it in items]) for m in ("audio", "visual", "text")
    }
    return FeatureBatch(
        audio_feats=padded["audio"][0],
        audio_mask=padded["audio"][1],
        visual_feats=padded["visual"][0],
        visual_mask=padded["visual"][1],
        text_feats=padded["text"][0],
        text_mask=padded["text"][1],
        labels=torch.stack([it["labels"] for it in items]).float(),
        ids=[it["id"] for it in items],
    )
