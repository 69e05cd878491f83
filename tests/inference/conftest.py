"""Fixtures of the inference tests: a tiny MESM with a header, and a small dataset of clips."""

from __future__ import annotations

import pytest
import torch

from mesm.data.synthetic import write_synthetic_dataset
from mesm.inference.checkpoint import TrainedModel
from mesm.models import TINY_TEXT, create_model

LABELS = ["ang", "hap", "neu", "sad"]


@pytest.fixture(scope="session")
def trained() -> TrainedModel:
    """An untrained tiny MESM (p = 0.7) with thresholds, as `mesm train` would save it."""
    torch.manual_seed(0)
    model = create_model("mesm", preset="tiny", num_classes=4, p=0.7, **TINY_TEXT).eval()
    meta = {
        "label_names": LABELS,
        "task": "single_label",
        "thresholds": [0.5, 0.4, 0.5, 0.6],
        "preprocessing": {},
        "extra": {"max_text_length": 40},
    }
    return TrainedModel(model, meta)


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory):
    """A dataset folder of 3 clips (one with a separate WAV), every one in the test split."""
    root = tmp_path_factory.mktemp("clips") / "data"
    write_synthetic_dataset(root, 3, duration=(1.0, 1.4), splits=("test",), seed=3)
    return root
