"""A few-step training run on a generated dataset: what it leaves, and exact resume."""

from __future__ import annotations

import csv
import json
import signal

import lightning.pytorch as pl
import pytest
import torch
import yaml

from bad_inputs import CASES
from mesm.data.media.dataset import EmotionDataset
from mesm.demo.synthetic import write_synthetic_dataset
from mesm.errors import CheckpointError, ConfigError, MissingInputError, OutputPathError
from mesm.inference.evaluate import evaluate_checkpoint
from mesm.models import TINY_TEXT, build_model, make_config
from mesm.trained.checkpoint import load_checkpoint
from mesm.trained.inputs import model_inputs
from mesm.training.config import RunConfig
from mesm.training.fit import train


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, 12, duration=(1.0, 1.5))
    return root


def _config(dataset_dir, **trainer) -> RunConfig:
    return RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "arch": "mesm", "gating": "gated", "p": 0.7, **TINY_TEXT},
            "data": {"path": str(dataset_dir), "batch_size": 2},
            "optim": {"lr": 1e-3, "scheduler": "cosine", "grad_clip": 1.0},
            "trainer": {"max_epochs": 2, "log_every_n_steps": 1, "deterministic": True, **trainer},
        }
    )


def test_training_run_leaves_checkpoints_logs_and_config(dataset_dir, tmp_path):
    config = _config(dataset_dir)
    result = train(config, tmp_path / "run", enable_progress_bar=False)
    run = tmp_path / "run"
    assert result.best_ckpt.is_file() and result.last_ckpt.is_file()
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    for section in ("data", "optim", "trainer"):
        assert resolved[section] == config.to_dict()[section]
    assert resolved["trainer"]["patience"] == 5  # defaults filled
    # The model section after the tiny preset, the overrides and what the data fixed (4 labels):
    # every field, no preset left to re-apply on resume.
    expected = make_config("mesm", "tiny", gating="gated", p=0.7, num_classes=4, **TINY_TEXT)
    assert resolved["model"] == {"preset": None, **expected.to_dict()}
    assert RunConfig.from_dict(resolved).model_config() == expected
    rows = list(csv.DictReader((run / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert all(float(r["train/utt_per_s"]) > 0 for r in rows if r.get("train/loss"))
    assert len(losses) == 2 * 3  # 6 train utterances, batch 2, 2 epochs
    assert sum(1 for r in rows if r.get("val/f1")) == 2 + 1  # each epoch, then the best again
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["per_emotion"]) == {"ang", "hap", "neu", "sad"}
    assert metrics["test"]["num_samples"] == 3

    model, meta = load_checkpoint(result.checkpoint)
    assert meta["label_names"] == ["ang", "hap", "neu", "sad"] and meta["task"] == "single_label"
    assert meta["modalities"] == "tav" and meta["model"]["arch"] == "mesm"
    assert len(meta["thresholds"]) == 4 and meta["preprocessing"]["img_interval_ms"] == 500
    best = torch.load(result.best_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, best[f"model.{name}"]), name
    test_set = EmotionDataset(dataset_dir, "test")
    batch = test_set.collate([test_set[i] for i in range(len(test_set))])
    with torch.no_grad():
        logits = model(**model_inputs(model, batch))
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()
    # The network config.yaml describes, with the best epoch's weights, gives these logits...
    rebuilt = build_model(RunConfig.from_dict(resolved).model_config()).eval()
    rebuilt.load_state_dict({k[6:]: v for k, v in best.items() if k.startswith("model.")})
    with torch.no_grad():
        assert torch.equal(rebuilt(**model_inputs(rebuilt, batch)), logits)
    # ...and the saved model reproduces the test report training wrote, metric for metric.
    again = evaluate_checkpoint(result.checkpoint, dataset_dir, "test", precision="auto")
    for key in ("per_emotion", "average"):  # as JSON: NaN (an AUC with one class) equals NaN
        assert json.dumps(again[key], sort_keys=True) == json.dumps(
            metrics["test"][key], sort_keys=True
        )


class _Interrupt(pl.Callback):
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt  # what Ctrl-C does mid-run


def test_resume_after_interruption_reaches_the_same_weights(dataset_dir, tmp_path):
    config = _config(dataset_dir, max_epochs=3, patience=10)
    straight = train(config, tmp_path / "a", enable_progress_bar=False)
    # Lightning turns Ctrl-C into a graceful stop and sys.exit(1) (and ignores SIGINT from then
    # on: restored below, so this process still stops on Ctrl-C).
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as stopped:
            train(config, tmp_path / "b", enable_progress_bar=False, callbacks=[_Interrupt()])
    finally:
        signal.signal(signal.SIGINT, handler)
    assert stopped.value.code == 1
    assert torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)["epoch"] == 0
    resumed = train(config, tmp_path / "b", resume=True, enable_progress_bar=False)
    a = torch.load(straight.last_ckpt, weights_only=True)
    b = torch.load(resumed.last_ckpt, weights_only=True)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 9)
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name


def test_run_folder_misuse_is_a_clear_error(dataset_dir, tmp_path):
    # Each check comes before any training: a folder holding a last.ckpt is a used run folder.
    with pytest.raises(MissingInputError, match="cannot resume"):
        train(_config(dataset_dir), tmp_path / "none", resume=True)
    used = tmp_path / "run" / "checkpoints"
    used.mkdir(parents=True)
    (used / "last.ckpt").write_bytes(b"")
    with pytest.raises(OutputPathError, match="already holds a run") as err:
        train(_config(dataset_dir), tmp_path / "run")
    assert err.value.filename == str(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]  # untouched
    with pytest.raises(ConfigError, match=r"data\.path"):
        train(RunConfig.from_dict({"model": {"preset": "tiny", **TINY_TEXT}}), tmp_path / "x")


class _ModeProbe(pl.Callback):
    """Records whether every submodule is in train mode at each train / validation batch."""

    def __init__(self) -> None:
        self.train: list[bool] = []
        self.val: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train.append(all(m.training for m in pl_module.modules()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *args) -> None:
        self.val.append(not any(m.training for m in pl_module.modules()))


def test_every_submodule_trains_in_train_mode_and_validates_in_eval_mode(dataset_dir, tmp_path):
    # With the pretrained text encoder (from_pretrained hands it over in eval mode).
    config = RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "arch": "mesm", "p": 0.7},
            "data": {"path": str(dataset_dir), "batch_size": 3},
            "trainer": {"max_epochs": 1, "log_every_n_steps": 1},
        }
    )
    probe = _ModeProbe()
    train(config, tmp_path / "run", enable_progress_bar=False, callbacks=[probe])
    assert probe.train and all(probe.train)
    assert probe.val and all(probe.val)


class _Payload:
    """Unpickling this runs `open(marker, "w")`: harmless, but visible."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_refuses_a_malicious_last_ckpt_even_with_the_old_torch_default(
    dataset_dir, tmp_path, monkeypatch
):
    # torch < 2.6 unpickled anything by default; this variable restores that default.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    torch.save({"epoch": 0, "state_dict": {}, "payload": _Payload(str(marker))}, last)
    with pytest.raises(CheckpointError, match=CASES["resume-malicious-ckpt"].message) as err:
        train(_config(dataset_dir, max_epochs=1), run, resume=True, enable_progress_bar=False)
    assert str(last) in str(err.value)
    assert not marker.exists()
    # The file is a real threat: loaded the old default way, the payload runs.
    torch.load(last)
    assert marker.exists()
