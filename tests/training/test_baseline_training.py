"""The two-phase pipeline end to end: `extract_features`, `mesm train` / `mesm evaluate` with each
baseline through the command line, checkpoints, and `compare_runs` over the runs."""

from __future__ import annotations

import json

import pytest
import torch

from mesm.cli import main
from mesm.data.handcrafted.dataset import FeatureDataset
from mesm.data.handcrafted.features import extract_features
from mesm.demo.synthetic import write_synthetic_dataset
from mesm.errors import MissingInputError
from mesm.evaluation.compare import compare_runs
from mesm.models import BASELINE_ARCHS
from mesm.models.baselines import BaselineModel, EmoEmbs
from mesm.trained.checkpoint import load_checkpoint
from mesm.trained.inputs import model_inputs

LABELS = ["ang", "hap", "neu", "sad"]


@pytest.fixture(scope="module")
def feature_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    write_synthetic_dataset(root, 8, duration=(1.0, 1.2))
    report = extract_features(root, progress=False)
    assert report.computed == 8 and not report.failed
    # The command line reuses what the library call cached.
    assert main(["features", str(root), "--no-progress"]) == 0
    return root


@pytest.fixture(scope="module")
def runs(feature_data, tmp_path_factory):
    """One 1-epoch run per baseline, through `mesm train`."""
    out = tmp_path_factory.mktemp("runs")
    done = {}
    for arch in BASELINE_ARCHS:
        sets = [
            f"data.path={feature_data}",
            "data.batch_size=4",
            "model.preset=tiny",
            f"model.arch={arch}",
            "model.text_pretrained=false",
            "model.text_overrides={hidden_size: 32}",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
        ]
        config = "configs/mosei_lf_lstm.yaml"  # the paper preset, shrunk by the overrides
        args = ["train", "--config", config, "--out", str(out / arch)]
        assert main(args + [x for s in sets for x in ("--set", s)]) == 0, arch
        done[arch] = out / arch
    return done


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_cli_training_leaves_a_loadable_baseline_checkpoint(runs, feature_data, arch):
    run = runs[arch]
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["test"]["per_emotion"]) == LABELS and metrics["test"]["num_samples"] == 2
    model, meta = load_checkpoint(run / "best.safetensors")
    assert isinstance(model, BaselineModel) and meta["model"]["arch"] == arch
    # The header records the baseline config (widths of the cached features, emotion names)
    # and the feature settings that select the cache.
    assert (meta["model"]["audio_dim"], meta["model"]["visual_dim"]) == (25, 915)
    assert meta["model"]["label_names"] == LABELS and meta["model"]["hidden_dim"] == 16
    assert meta["preprocessing"]["audio_set"] == "egemaps"
    if arch == "emoembs":
        assert isinstance(model, EmoEmbs) and model.emotion_embeddings.shape == (4, 32)
    test = FeatureDataset(feature_data, "test")
    batch = test.collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        logits = model(**model_inputs(model, batch))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_cli_evaluate_reads_the_feature_cache(runs, feature_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    ckpt = runs["mult"] / "best.safetensors"
    args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(feature_data)]
    assert main([*args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["num_samples"] == 2 and list(report["per_emotion"]) == LABELS
    saved = json.loads((runs["mult"] / "metrics.json").read_text())["test"]
    assert report["average"]["f1"] == pytest.approx(saved["average"]["f1"])


def test_compare_runs_puts_models_in_rows_and_emotions_in_columns(runs):
    table = compare_runs([runs["lf_lstm"], runs["mult"]])
    lines = table.splitlines()
    assert lines[0] == "test split"
    assert lines[1].split() == [*LABELS, "Average"]
    assert lines[2].split() == ["Model", *["Acc", "F1"] * 5]
    rows = [line.split() for line in lines[4:]]
    assert [r[0] for r in rows] == ["LF-LSTM", "MulT"]
    for row, arch in zip(rows, ("lf_lstm", "mult"), strict=True):
        test = json.loads((runs[arch] / "metrics.json").read_text())["test"]
        assert len(row) == 1 + 10
        assert float(row[1]) == pytest.approx(100 * test["per_emotion"]["ang"]["acc"], abs=0.05)
        assert float(row[10]) == pytest.approx(100 * test["average"]["f1"], abs=0.05)
    with pytest.raises(MissingInputError, match=r"metrics\.json"):
        compare_runs([runs["mult"].parent])


def test_compare_command_prints_the_same_table(runs, tmp_path, capsys):
    out = tmp_path / "compare.json"
    assert main(["compare", str(runs["lf_lstm"]), str(runs["mult"])]) == 0
    assert capsys.readouterr().out.strip() == compare_runs([runs["lf_lstm"], runs["mult"]]).strip()
    assert main(["compare", str(runs["lf_lstm"]), str(runs["mult"]), "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["name"] for r in records] == ["LF-LSTM", "MulT"]
    test = json.loads((runs["mult"] / "metrics.json").read_text())["test"]
    assert records[1]["report"]["average"]["f1"] == test["average"]["f1"]
    assert records[1]["run"] == str(runs["mult"])
