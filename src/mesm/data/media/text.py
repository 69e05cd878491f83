"""Transcripts → token ids with the text encoder's own tokenizer.

A BERT tokenizer saved as ``tokenizer.json`` (the default MiniLM's) is run by the `tokenizers`
library directly, which is what transformers' fast tokenizer wraps (the same ids; a test checks
them against ``AutoTokenizer``) without importing transformers; any other tokenizer is read with
``AutoTokenizer``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
        self.model = model or default_text_model()
        self.max_length = max_length
        self._rust = _bert_tokenizer(Path(self.model), max_length)
        if self._rust is not None:
            self.pad_id = int(self._rust.token_to_id(_special(Path(self.model), "pad_token")) or 0)
            return
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        self.pad_id = int(self._tokenizer.pad_token_id or 0)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each transcript, special tokens included, truncated, unpadded."""
        if self._rust is not None:
            return [list(e.ids) for e in self._rust.encode_batch(list(texts))]
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


def _bert_tokenizer(folder: Path, max_length: int) -> Any:
    """The folder's ``tokenizer.json`` as a `tokenizers.Tokenizer`, truncating to `max_length`
    and never padding, when it is a BERT tokenizer whose saved settings agree with its
    normaliser (what transformers' fast BERT tokenizer runs); None otherwise."""
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    normalizer = spec.get("normalizer") or {}
    if (
        config.get("tokenizer_class") not in ("BertTokenizer", "BertTokenizerFast")
        or normalizer.get("type") != "BertNormalizer"
        or normalizer.get("lowercase") != config.get("do_lower_case", True)
        or normalizer.get("strip_accents") != config.get("strip_accents")
        or normalizer.get("handle_chinese_chars") != config.get("tokenize_chinese_chars", True)
    ):
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def _special(folder: Path, name: str) -> str:
    """A special token's text (``pad_token`` …) from the folder's tokenizer files."""
    for file in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            value = json.loads((folder / file).read_text(encoding="utf-8")).get(name)
        except (OSError, ValueError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return "[PAD]"


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
