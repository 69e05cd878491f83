"""A training run prints what a user can act on, and none of Lightning's notices about itself."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from helpers import TINY_TEXT_SETS
from mesm.cli import main
from mesm.demo.synthetic import write_synthetic_dataset
from mesm.training.quiet import batch_limits, log_interval, silence_lightning_notices

# What Lightning 2.6 printed during a tiny `mesm train` before, each named by what it is.
NOTICES = {
    "cloud-logger tip": "💡 Tip",
    "limit_*_batches=1.0 announcement": "was configured so",
    "GPU inventory": "GPU available",
    "TPU inventory": "TPU available",
    "mixed-precision line (mesm prints its own)": "Automatic Mixed Precision",
    "logging interval longer than the epoch": "smaller than the logging interval",
    "DataLoader worker-count suggestion": "does not have many workers",
    "modules in eval mode at the start of training": "in eval mode",
    "tensorboardX notice": "tensorboardX",
    "torch pytree deprecation raised by Lightning": "LeafSpec",
}


def test_a_tiny_training_run_prints_no_framework_notices(
    tmp_path, capfd, caplog, recwarn, monkeypatch
):
    # Lightning's handler writes to the stderr of the moment lightning was imported; when that
    # was during collection (another folder's conftest), it is not the stream captured here.
    for handler in logging.getLogger("lightning.pytorch").handlers:
        if isinstance(handler, logging.StreamHandler):
            monkeypatch.setattr(handler, "stream", sys.stderr)
    data = tmp_path / "data"
    write_synthetic_dataset(data, 8, duration=(1.0, 1.2))
    sets = [f"data.path={data}", "data.batch_size=4", "model.preset=tiny", *TINY_TEXT_SETS]
    sets += ["model.arch=mesm", "trainer.max_epochs=1"]
    argv = ["train", "--out", str(tmp_path / "run"), "--precision", "bf16", "--no-progress"]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 0
    out, err = capfd.readouterr()
    printed = out + err + caplog.text  # Lightning logs through `logging`
    assert "training precision: bf16 autocast" in printed  # mesm's own line comes through
    assert "test (2 utterances)" in out and "best.safetensors" in out
    assert {name: text for name, text in NOTICES.items() if text in printed} == {}
    assert [f"{w.category.__name__}: {w.message}" for w in recwarn] == []


def test_only_the_named_messages_are_silenced(recwarn):
    silence_lightning_notices()
    warnings.warn(
        "The 'train_dataloader' does not have many workers which may be a bottleneck.",
        PossibleUserWarning,
        stacklevel=1,
    )
    warnings.warn("Checkpoint directory /r/checkpoints exists and is not empty.", stacklevel=1)
    warnings.warn("any other warning", PossibleUserWarning, stacklevel=1)
    warnings.warn("any deprecation", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in recwarn] == ["any other warning", "any deprecation"]


@pytest.mark.parametrize(
    ("limits", "passed"),
    [
        ((1.0, 1.0), {}),
        ((1, 1.0), {"limit_train_batches": 1}),
        ((0.5, 2), {"limit_train_batches": 0.5, "limit_val_batches": 2}),
    ],
)
def test_batch_limits_are_passed_only_when_they_limit(limits, passed):
    assert batch_limits(*limits) == passed


def test_log_interval_is_capped_at_the_batches_of_an_epoch():
    assert log_interval(10, 8, 4, 1.0) == 2  # 2 batches an epoch
    assert log_interval(10, 100, 4, 1.0) == 10
    assert log_interval(10, 100, 4, 3) == 3 and log_interval(10, 100, 4, 0.2) == 5
    assert log_interval(10, 1, 4, 0.1) == 1  # never 0
