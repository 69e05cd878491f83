"""Test helpers: tiny models and random batches built on the fly (nothing is downloaded)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest
import torch

from mesm.models import TINY_TEXT, create_model


def make_batch(
    face_lengths: list[int],
    spec_lengths: list[int],
    text_lengths: list[int] | None = None,
    num_classes: int = 6,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A random batch in the Batch contract of docs/architecture.md (lengths may be 0)."""
    g = torch.Generator().manual_seed(seed)
    batch = len(face_lengths)
    text_lengths = text_lengths or [5] * batch
    width = max(text_lengths)
    ids = torch.randint(1000, 2000, (batch, width), generator=g)
    mask = torch.arange(width)[None, :] < torch.tensor(text_lengths)[:, None]
    ids[:, 0] = 101  # [CLS]
    ids = ids.masked_fill(~mask, 0)
    return {
        "text_ids": ids,
        "text_mask": mask,
        "faces": torch.randn(sum(face_lengths), 3, 48, 48, generator=g),
        "face_lengths": torch.tensor(face_lengths, dtype=torch.long),
        "specs": torch.randn(sum(spec_lengths), 1, 128, 32, generator=g).abs(),
        "spec_lengths": torch.tensor(spec_lengths, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch, num_classes), generator=g).float(),
    }


def tiny_model(arch: str = "fe2e", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(arch, preset="tiny", **{**TINY_TEXT, **overrides})


def model_inputs(batch: dict) -> dict:
    keys = ("text_ids", "text_mask", "faces", "face_lengths", "specs", "spec_lengths")
    return {k: batch[k] for k in keys}


# `--set` overrides that give a run config the tiny random text encoder (no download).
TINY_TEXT_SETS = [
    "model.text_pretrained=false",
    "model.text_overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
    "intermediate_size: 64}",
]


# CI runs scripts/install.sh first, which installs every extra and system package a test needs:
# there a missing one is a broken install, not a reason to skip.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """A test's system package or extra is missing: skipped on a developer's machine, failed in
    CI (``CI=true``), where ``scripts/install.sh`` must have installed it."""
    if IN_CI:
        pytest.fail(f"{reason}, but CI installs it (scripts/install.sh): the install is broken")
    pytest.skip(reason)


def require_module(name: str, reason: str) -> ModuleType:
    """``pytest.importorskip`` that fails in CI (see :func:`missing`)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(reason)
