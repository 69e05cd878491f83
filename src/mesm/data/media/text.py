"""Transcripts → token ids with the text encoder's own tokenizer (Hugging Face AutoTokenizer)."""

from __future__ import annotations

import os

import torch

from mesm.resources import default_text_model


class TextTokenizer:
    """Tokenises transcripts for the text encoder, truncating to `max_length` tokens.

    Args:
        model: a Hugging Face model name or local folder (None: the offline default from
            `mesm.resources.default_text_model`). Only local files are used.
        max_length: the most tokens kept per transcript, special tokens included (paper: 100).
    """

    def __init__(self, model: str | None = None, *, max_length: int = 100) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        # Tokenising happens before DataLoader workers fork; Rust-side threads then warn or hang.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoTokenizer

        self.model = model or default_text_model()
        self.max_length = max_length
        self._tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        self.pad_id = int(self._tokenizer.pad_token_id or 0)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each transcript, special tokens included, truncated, unpadded."""
        out = self._tokenizer(
            list(texts), truncation=True, max_length=self.max_length, add_special_tokens=True
        )
        return [list(ids) for ids in out["input_ids"]]

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded token ids and mask of a batch of transcripts.

        Returns:
            ids (B, L) int64 and mask (B, L) bool (True = real token), L = longest in the batch.
        """
        return pad_token_ids(self.encode(texts), self.pad_id)


def pad_token_ids(sequences: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest.

    Args:
        sequences: B lists of token ids.
        pad_id: the tokenizer's padding id.

    Returns:
        ids (B, L) int64 and mask (B, L) bool, True at real tokens.
    """
    length = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(sequences), length), dtype=torch.bool)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.int64)
        mask[i, : len(seq)] = True
    return ids, mask
