"""Shared fixtures (helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return make_batch([2, 0, 3], [1, 2, 3], [4, 7, 5])
