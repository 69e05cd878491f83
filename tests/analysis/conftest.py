"""Fixtures of the analysis tests: a generated dataset and a 1-epoch tiny MESM trained on it."""

from __future__ import annotations

import pytest

from mesm.demo.synthetic import write_synthetic_dataset
from mesm.models import TINY_TEXT
from mesm.training.config import RunConfig
from mesm.training.fit import train


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory):
    # 12 clips: 6 train, 3 valid, 3 test (the generator cycles train, train, valid, test).
    root = tmp_path_factory.mktemp("analysis_data")
    write_synthetic_dataset(root, 12, duration=(1.0, 1.5))
    return root


@pytest.fixture(scope="session")
def checkpoint(dataset_dir, tmp_path_factory):
    """A trained tiny MESM (p = 0.7, the paper's gating) as a .safetensors checkpoint."""
    config = RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "arch": "mesm", "p": 0.7, **TINY_TEXT},
            "data": {"path": str(dataset_dir), "batch_size": 4},
            "optim": {"lr": 1e-3},
            "trainer": {"max_epochs": 1, "log_every_n_steps": 1, "deterministic": True},
        }
    )
    run = train(config, tmp_path_factory.mktemp("analysis_run") / "run", enable_progress_bar=False)
    return run.checkpoint
