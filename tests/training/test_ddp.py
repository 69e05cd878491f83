"""DDP on CPU: 2 processes (gloo) train to the same weights and losses as one process.

Every utterance of the tiny dataset shows the same clip (texts and labels differ), so batch-norm
statistics cannot depend on how utterances are split over processes, and every step sees the
whole training split, so the order of the samplers does not matter either: one process with
batch 4 and two with batch 2 must then compute the same averaged gradients.
"""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch

from mesm.data.manifest import write_dataset
from mesm.demo.synthetic import write_synthetic_dataset
from mesm.models import TINY_TEXT
from mesm.training.config import RunConfig
from mesm.training.fit import train

TEXTS = ("I did not expect that", "well that is nice", "really today", "at all", "no", "yes")


def _dataset(root):
    info, (record,) = write_synthetic_dataset(root, 1, splits=("train",))
    splits = ["train"] * 4 + ["valid"] * 2
    records = [
        dataclasses.replace(
            record, id=f"u{i}", text=TEXTS[i], labels=(info.label_names[i % 4],), split=splits[i]
        )
        for i in range(6)
    ]
    write_dataset(root, info, records)


def _config(root, devices: int, batch_size: int, strategy: str) -> RunConfig:
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    text = {**TINY_TEXT, "text_overrides": {**TINY_TEXT["text_overrides"], **no_dropout}}
    return RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "arch": "fe2e", "dropout": 0.0, **text},
            "data": {"path": str(root), "batch_size": batch_size},
            "optim": {"lr": 1e-3},
            "trainer": {
                "max_epochs": 3,
                "log_every_n_steps": 1,
                "accelerator": "cpu",
                "devices": devices,
                "strategy": strategy,
                "deterministic": True,
                "precision": "32",  # equivalence in float32 (auto may pick bf16 on this CPU)
            },
        }
    )


def _losses(run_dir) -> list[float]:
    rows = csv.DictReader((run_dir / "logs" / "csv" / "version_0" / "metrics.csv").open())
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    _dataset(tmp_path / "data")
    single = train(
        _config(tmp_path / "data", 1, 4, "auto"), tmp_path / "one", enable_progress_bar=False
    )
    ddp = train(
        _config(tmp_path / "data", 2, 2, "ddp_spawn"), tmp_path / "two", enable_progress_bar=False
    )
    one, two = _losses(single.run_dir), _losses(ddp.run_dir)
    assert len(one) == len(two) == 3  # 3 epochs of one step each
    assert one == pytest.approx(two, rel=1e-4)
    a = torch.load(single.last_ckpt, weights_only=True)
    b = torch.load(ddp.last_ckpt, weights_only=True)
    assert a["global_step"] == b["global_step"] == 3
    assert a["state_dict"].keys() == b["state_dict"].keys()
    # BN running variances use each process's own sample count (unbiased n/(n-1)): not compared.
    names = [
        k for k, v in a["state_dict"].items() if v.is_floating_point() and "running_var" not in k
    ]
    diffs = torch.cat([(a["state_dict"][k] - b["state_dict"][k]).abs().flatten() for k in names])
    # Adam turns gradients that are 0 up to rounding (e.g. attention key biases) into steps of
    # up to lr, so a few weights may differ by up to steps × lr; everything else agrees.
    assert diffs.max() <= 3 * 1e-3
    assert (diffs <= 1e-5).float().mean() >= 0.999
