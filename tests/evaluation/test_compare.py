"""`compare_runs` names each row from the run's resolved config.yaml (arch, p, modalities)."""

from __future__ import annotations

import json

import pytest
import yaml

from mesm.evaluation.compare import compare_runs

LABELS = ["ang", "hap"]


def _run(folder, model: dict, f1: float):
    folder.mkdir()
    per = {n: {"acc": 0.5, "f1": f1} for n in LABELS}
    report = {"metric": "acc", "per_emotion": per, "average": {"acc": 0.5, "f1": f1}}
    (folder / "metrics.json").write_text(json.dumps({"test": report}))
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": model}))
    return folder


def test_rows_are_named_from_the_resolved_model_section(tmp_path):
    mesm = _run(
        tmp_path / "a", {"preset": None, "arch": "mesm", "p": 0.5, "modalities": "tav"}, 0.8
    )
    fe2e = _run(tmp_path / "b", {"preset": None, "arch": "fe2e", "p": 0.7, "modalities": "tv"}, 0.6)
    lines = compare_runs([mesm, fe2e]).splitlines()
    assert lines[2].split() == ["Model", *["Acc", "F1"] * 3]
    rows = [line.split() for line in lines[4:]]
    assert rows[0][:2] == ["MESM", "(p=0.5)"] and rows[0][-1] == "80.0"
    assert rows[1][:2] == ["FE2E", "[tv]"] and rows[1][-1] == "60.0"  # no p for a dense model


def test_runs_on_other_emotions_are_refused(tmp_path):
    a = _run(tmp_path / "a", {"arch": "fe2e"}, 0.5)
    b = tmp_path / "b"
    _run(b, {"arch": "fe2e"}, 0.5)
    metrics = json.loads((b / "metrics.json").read_text())
    metrics["test"]["per_emotion"] = {"sad": {"acc": 1.0, "f1": 1.0}}
    (b / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="emotions/metric differ"):
        compare_runs([a, b])
