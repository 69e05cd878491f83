"""Metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import require_module
from mesm.evaluation import THRESHOLD_GRID, Confusion, auc, evaluate, format_table, tune_thresholds


def test_threshold_grid_is_the_papers():
    assert THRESHOLD_GRID.tolist() == [round(0.05 * i, 2) for i in range(1, 20)]


def test_confusion_counts_and_metrics_by_hand():
    conf = Confusion.of(np.array([1, 1, 0, 0, 1, 0]), np.array([1, 0, 0, 1, 1, 0]))
    assert (conf.tp, conf.fp, conf.tn, conf.fn) == (2, 1, 2, 1)
    assert conf.accuracy == pytest.approx(4 / 6)
    assert conf.f1 == pytest.approx(4 / 6)  # 2·2 / (2·2 + 1 + 1)
    # WAcc = (TP·N/P + TN) / 2N with P = 3, N = 3
    assert conf.weighted_accuracy == pytest.approx((2 * 3 / 3 + 2) / 6)


def test_weighted_accuracy_formula_on_imbalanced_counts():
    # P = 2, N = 8: TP = 1, TN = 6 → (1·8/2 + 6) / 16 = 10/16
    pred = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 0])
    label = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    assert Confusion.of(pred, label).weighted_accuracy == pytest.approx(10 / 16)


def test_class_with_no_positives():
    conf = Confusion.of(np.array([0, 1, 0]), np.array([0, 0, 0]))
    assert conf.f1 == 0.0
    assert conf.weighted_accuracy == pytest.approx(2 / 3)  # TNR
    assert np.isnan(auc(np.array([0.1, 0.9, 0.3]), np.array([0, 0, 0])))
    assert Confusion.of(np.zeros(3), np.zeros(3)).f1 == 0.0


def test_threshold_ties_go_to_the_lowest():
    # Positive = strictly above the threshold: every threshold in [0.2, 0.8) separates
    # perfectly, F1 = 1 from 0.20 up to 0.75.
    probs = np.array([[0.2], [0.8], [0.81], [0.1]])
    labels = np.array([[0], [1], [1], [0]])
    assert tune_thresholds(probs, labels).tolist() == [0.2]
    # All predictions wrong at every threshold: F1 = 0 everywhere, lowest threshold wins.
    assert tune_thresholds(np.array([[0.9], [0.01]]), np.array([[0], [1]])).tolist() == [0.05]


def test_thresholds_are_per_emotion():
    probs = np.array([[0.3, 0.9], [0.6, 0.7], [0.4, 0.2], [0.1, 0.75]])
    labels = np.array([[0, 1], [1, 0], [1, 0], [0, 1]])
    # emotion 0: positives 0.6, 0.4 vs negatives 0.3, 0.1 → first perfect threshold 0.30
    # emotion 1: positives 0.9, 0.75 vs negatives 0.7, 0.2 → first perfect threshold 0.70
    assert tune_thresholds(probs, labels).tolist() == [0.3, 0.7]


def test_a_probability_on_the_threshold_is_negative_as_in_the_papers_code():
    probs = np.array([[0.5], [0.5], [0.9], [0.1]])
    labels = np.array([[1], [0], [1], [0]])
    report = evaluate(probs, labels, np.array([0.5]), ["hap"], task="multi_label")
    # 0.5 is not above 0.5: the first row is a false negative, the second a true negative.
    assert report["per_emotion"]["hap"]["f1"] == pytest.approx(2 / 3)


def test_auc_by_hand_with_ties():
    scores = np.array([0.1, 0.4, 0.4, 0.8])
    labels = np.array([0, 0, 1, 1])
    # pairs (pos, neg): (0.4,0.1)=1 (0.4,0.4)=0.5 (0.8,0.1)=1 (0.8,0.4)=1 → 3.5/4
    assert auc(scores, labels) == pytest.approx(3.5 / 4)


def test_auc_matches_scikit_learn():
    metrics = require_module("sklearn.metrics", "scikit-learn (a dev extra) is not installed")
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(200), 2)  # ties included
    labels = rng.random(200) < 0.3
    assert auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))


def test_evaluate_multi_label_rows_and_averages():
    names = ["anger", "joy"]
    probs = np.array([[0.9, 0.8], [0.2, 0.7], [0.6, 0.1], [0.1, 0.3]])
    labels = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])  # row 0 has two emotions at once
    report = evaluate(probs, labels, np.array([0.5, 0.5]), names, task="multi_label")
    assert report["metric"] == "wacc" and report["num_samples"] == 4
    for name in names:
        row = report["per_emotion"][name]
        assert row["wacc"] == 1.0 and row["f1"] == 1.0 and row["auc"] == 1.0
        assert row["positives"] == 2
    report = evaluate(probs, labels, np.array([0.95, 0.05]), names, task="multi_label")
    anger, joy = report["per_emotion"]["anger"], report["per_emotion"]["joy"]
    assert anger["f1"] == 0.0 and anger["wacc"] == pytest.approx(0.5)
    assert joy["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2)) and joy["wacc"] == pytest.approx(0.5)
    assert report["average"]["f1"] == pytest.approx((0 + 2 / 3) / 2)
    table = format_table(report, "test")
    assert table.splitlines()[0] == "test" and "WAcc" in table and "average" in table


def test_evaluate_single_label_accuracy():
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6]])
    labels = np.eye(3)[[0, 1, 1]]
    report = evaluate(probs, labels, np.full(3, 0.5), ["a", "b", "c"], task="single_label")
    acc = {n: r["acc"] for n, r in report["per_emotion"].items()}
    assert acc == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 2 / 3})
    assert report["average"]["acc"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert report["top1_accuracy"] == pytest.approx(2 / 3)  # row 2 picks c, the label is b


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="must both be"):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        tune_thresholds(np.array([[np.nan]]), np.array([[1]]))
    with pytest.raises(ValueError, match="0/1"):
        tune_thresholds(np.array([[0.5]]), np.array([[2]]))
    with pytest.raises(ValueError, match="task"):
        evaluate(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), ["x"], task="binary")


def test_a_probability_equal_to_its_threshold_in_float32_is_not_present():
    from bad_inputs import CASES
    from mesm.evaluation import decide

    # float32(0.4) = 0.4000000059604645 > 0.4 in float64: the old comparison called it present.
    tie = float(np.float32(0.4))
    assert tie > 0.4  # the trap, in float64
    assert decide([tie, np.nextafter(np.float32(0.4), np.float32(1))], [0.4, 0.4]).tolist() == [
        False,
        True,
    ]
    probs, labels = np.array([[tie], [0.9], [0.1]]), np.array([[1], [1], [0]])
    report = evaluate(probs, labels, np.array([0.4]), ["hap"], task="single_label")
    assert report["per_emotion"]["hap"]["f1"] == pytest.approx(2 / 3)  # TP 1, FN 1 (the tie)
    # Tuning sees the same rule: at 0.4 the tie is negative, so 0.35 keeps it (F1 = 1).
    assert tune_thresholds(probs, labels, grid=[0.35, 0.4]).tolist() == [0.35]
    assert "strictly above" in CASES["threshold-tie"].outcome
