"""The top-p sweep: thresholds per p from valid, metrics and FLOPs on test, JSON + PNG figure."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from matplotlib.image import imread

from mesm.analysis.sweep import plot_sweep, sweep_p
from mesm.evaluation import evaluate, tune_thresholds
from mesm.inference.evaluate import open_split, predict_split
from mesm.models import build_model
from mesm.trained.checkpoint import load_checkpoint, load_model
from mesm.trained.precision import resolve_precision

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, shape):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 20_000  # a drawn figure, not a blank file
    image = imread(path)
    assert image.shape[:2] == shape
    assert image[..., :3].std() > 0.05  # lines and text on the background


@pytest.fixture(scope="module")
def sweep(checkpoint, dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return sweep_p(checkpoint, dataset_dir, ps=(1.0, 0.2, 0.6), batch_size=2, out_dir=out), out


def test_sweep_writes_json_and_png(sweep):
    result, out = sweep
    assert result["files"] == {"json": str(out / "sweep.json"), "png": str(out / "sweep.png")}
    assert json.loads((out / "sweep.json").read_text()) == result
    _check_png(out / "sweep.png", (768, 768))  # 6.4 x 6.4 inches at 120 dpi


def test_sweep_flops_grow_with_p_and_reach_fe2e_at_one(sweep):
    result, _ = sweep
    points = result["points"]
    assert [pt["p"] for pt in points] == [0.2, 0.6, 1.0]  # sorted
    gflops = [pt["gflops_per_utterance"] for pt in points]
    assert gflops[0] < gflops[1] < gflops[2]
    assert gflops[2] == result["fe2e"]["gflops_per_utterance"]  # exactly: p=1 keeps every site
    # p < 1 scores every site; at p = 1 (gating "none") nothing is pruned and scoring is skipped.
    assert [pt["attention_gflops_per_utterance"] > 0 for pt in points] == [True, True, False]
    kept = [pt["sites_kept"]["visual.stages.0"] for pt in points]
    assert kept[0] < kept[1] < kept[2] == 1.0
    # gating "none" at p = 1 computes FE2E's logits: same thresholds, same metrics.
    assert points[2]["thresholds"] == result["fe2e"]["thresholds"]
    assert points[2]["acc"] == result["fe2e"]["acc"] and points[2]["f1"] == result["fe2e"]["f1"]


def test_sweep_tunes_thresholds_on_valid_at_each_p(sweep, checkpoint, dataset_dir):
    result, _ = sweep
    assert result["metric"] == "acc" and result["trained_p"] == 0.7
    trained = load_model(checkpoint)
    meta = trained.meta
    # The 0.6 point rebuilt by hand: a model built at p = 0.6 with the same weights.
    model = build_model(dataclasses.replace(trained.model.config, p=0.6, text_pretrained=False))
    model.load_state_dict(trained.model.state_dict())
    model.eval()
    valid = open_split(dataset_dir, "valid", trained)
    test = open_split(dataset_dir, "test", trained)
    thresholds = tune_thresholds(*predict_split(model, valid, precision=resolve_precision("32")))
    probs, labels = predict_split(model, test, precision=resolve_precision("32"))
    report = evaluate(probs, labels, thresholds, meta["label_names"], meta["task"])
    point = result["points"][1]
    assert point["thresholds"] == thresholds.tolist()
    assert point["acc"] == report["average"]["acc"] and point["f1"] == report["average"]["f1"]


def test_sweep_needs_mesm(checkpoint, dataset_dir):
    model, _ = load_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="needs a MESM"):
        sweep_p(model.dense_twin(), dataset_dir, ps=(0.5,))
    with pytest.raises(ValueError, match="> 0"):
        sweep_p(model, dataset_dir, ps=(0.0, 0.5))


def test_plot_sweep_from_a_saved_result(tmp_path):
    # A multi-label result as read back from JSON (AUC undefined → null).
    points = [
        {
            "p": p,
            "wacc": 0.5 + p / 4,
            "f1": 0.4 + p / 5,
            "auc": None,
            "gflops_per_utterance": 10 * p,
            "attention_gflops_per_utterance": 0.3,
        }
        for p in np.linspace(0.1, 1.0, 10).round(1).tolist()
    ]
    result = {
        "metric": "wacc",
        "split": "test",
        "valid_split": "valid",
        "num_utterances": 42,
        "points": points,
        "fe2e": {"wacc": 0.74, "f1": 0.6, "auc": None, "gflops_per_utterance": 10.0},
    }
    path = plot_sweep(result, tmp_path / "figs" / "sweep.png", title="custom")
    assert path == tmp_path / "figs" / "sweep.png"
    _check_png(path, (768, 768))
