"""Dataset over a preprocessed dataset folder, and the collate function building a `Batch`.

Items come from the feature cache only. An entry that is missing is computed on first access
through the same code path `preprocess_dataset` uses (and saved), so the result is identical;
for training, run `preprocess_dataset` first — MTCNN inside a DataLoader worker is slow.

The batch contract (docs/architecture.md, Contracts): utterances in batch order, the frames
(chunks) of an utterance contiguous, lengths giving the split points.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NotRequired, TypedDict

import torch
from torch.utils.data import Dataset

from mesm.data.manifest import Record, label_vector, read_dataset
from mesm.data.media.cache import FeatureCache, PreprocessSettings
from mesm.data.media.faces import FaceCropper, make_cropper, normalize_faces
from mesm.data.media.text import TextTokenizer, pad_token_ids
from mesm.data.media.utterance import build_entry
from mesm.errors import UsageError


class Item(TypedDict):
    """One utterance as the Dataset returns it (before batching)."""

    id: str
    faces: torch.Tensor  # (T, 3, 48, 48) uint8
    found: torch.Tensor  # (T,) uint8, 1 = MTCNN found the face (0: centre-crop fallback)
    landmarks: torch.Tensor  # (T, 5, 2) float32 in crop pixels, NaN where no face was found
    specs: torch.Tensor  # (S, 1, 128, 32) float32
    text_ids: torch.Tensor  # (L,) int64, unpadded
    labels: torch.Tensor  # (K,) float32 multi-hot


class Batch(TypedDict):
    """The model input contract (docs/architecture.md, Contracts).

    faces (ΣT, 3, 48, 48) float32 normalised; face_lengths (B,) int64; specs (ΣS, 1, 128, 32)
    float32; spec_lengths (B,) int64; text_ids (B, L) int64; text_mask (B, L) bool, True = real
    token; labels (B, K) float32 multi-hot (one-hot for single-label datasets); ids, B strings;
    landmarks (ΣT, 5, 2) float32 (the faces' five points in crop pixels, NaN where no face was
    found; present when every item has them; the model does not read them).
    """

    faces: torch.Tensor
    face_lengths: torch.Tensor
    specs: torch.Tensor
    spec_lengths: torch.Tensor
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    landmarks: NotRequired[torch.Tensor]


class LabelledUtterances(Dataset):
    """The selected records of a dataset folder and their label vectors (shared by the datasets).

    Args:
        dataset_dir: the dataset folder (see `mesm.data.manifest`).
        split: "train", "valid", "test" or None for every record.
        check_files: verify the media files exist (False where features replace the media).

    Attributes:
        info: the dataset header (label names, task).
        records: the selected utterances.
        labels: (N, K) float32 multi-hot label vectors, in record order.
    """

    def __init__(
        self, dataset_dir: str | os.PathLike, split: str | None, *, check_files: bool = True
    ) -> None:
        self.root = Path(dataset_dir)
        self.info, records = read_dataset(self.root, check_files=check_files)
        self.records: list[Record] = [r for r in records if split is None or r.split == split]
        if not self.records:
            raise UsageError(f"{self.root}: no utterances in split {split!r}")
        self.split = split
        self.labels = torch.tensor([label_vector(r, self.info) for r in self.records])

    @property
    def label_names(self) -> tuple[str, ...]:
        """The K class names, in label-vector order."""
        return self.info.label_names

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.info.label_names)

    @property
    def ids(self) -> list[str]:
        """Utterance ids in dataset order."""
        return [r.id for r in self.records]

    def pos_weight(self) -> torch.Tensor:
        """(K,) negatives / positives per class (for BCE `pos_weight`); classes with no
        positive get 1."""
        positives = self.labels.sum(dim=0)
        negatives = len(self) - positives
        return torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones(()))

    def __len__(self) -> int:
        return len(self.records)


class EmotionDataset(LabelledUtterances):
    """Utterances of a dataset folder, read from its feature cache.

    Args:
        dataset_dir: the dataset folder (see `mesm.data.manifest`).
        split: "train", "valid", "test" or None for every record.
        settings: the preprocessing settings selecting the cache (default: the paper's).
        text_model: tokenizer name/folder (None: the offline default text encoder).
        max_text_length: most tokens per transcript (paper: 100).
        compute_missing: compute (and cache) entries that are missing instead of raising.

    Attributes:
        info: the dataset header (label names, task).
        records: the selected utterances.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        split: str | None = None,
        *,
        settings: PreprocessSettings | None = None,
        text_model: str | None = None,
        max_text_length: int = 100,
        compute_missing: bool = True,
    ) -> None:
        super().__init__(dataset_dir, split)
        self.cache = FeatureCache(self.root, settings)
        self.compute_missing = compute_missing
        tokenizer = TextTokenizer(text_model, max_length=max_text_length)
        # Tokenised once here: cheap, and it keeps the tokenizer out of DataLoader workers.
        self.token_ids = tokenizer.encode([r.text for r in self.records])
        self.pad_id = tokenizer.pad_id
        self._cropper: FaceCropper | None = None

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        if self.compute_missing and not self.cache.has(record.id):
            if self._cropper is None:
                self._cropper = make_cropper(self.cache.settings)
            build_entry(self.cache, record, self._cropper)
        entry = self.cache.load(record.id)
        return Item(
            id=record.id,
            faces=entry["faces"],
            found=entry["found"],
            landmarks=entry["landmarks"],
            specs=entry["specs"],
            text_ids=torch.tensor(self.token_ids[index], dtype=torch.int64),
            labels=self.labels[index],
        )

    def collate(self, items: list[Item]) -> Batch:
        """`collate` with this dataset's padding id (pass as DataLoader `collate_fn`)."""
        return collate(items, pad_id=self.pad_id)

    def __getstate__(self) -> dict:
        # A DataLoader worker gets a copy; MTCNN is rebuilt there only if it is needed.
        state = self.__dict__.copy()
        state["_cropper"] = None
        return state


def collate(items: list[Item], pad_id: int = 0) -> Batch:
    """Concatenate variable-length utterances into a `Batch`.

    Args:
        items: B items from `EmotionDataset`.
        pad_id: token id used to pad transcripts.

    Returns:
        The batch; faces are normalised here (the cache keeps uint8).
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    text_ids, text_mask = pad_token_ids([it["text_ids"].tolist() for it in items], pad_id)
    batch = Batch(
        faces=normalize_faces(torch.cat([it["faces"] for it in items])),
        face_lengths=torch.tensor([it["faces"].shape[0] for it in items], dtype=torch.int64),
        specs=torch.cat([it["specs"] for it in items]).float(),
        spec_lengths=torch.tensor([it["specs"].shape[0] for it in items], dtype=torch.int64),
        text_ids=text_ids,
        text_mask=text_mask,
        labels=torch.stack([it["labels"] for it in items]).float(),
        ids=[it["id"] for it in items],
    )
    if all("landmarks" in it for it in items):  # read by the region analysis, not the model
        batch["landmarks"] = torch.cat([it["landmarks"] for it in items]).float()
    return batch
