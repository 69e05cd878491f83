"""The quick demo end to end: both models learn the synthetic corpus well above chance."""

from __future__ import annotations

import json

from mesm.cli import main


def test_quick_demo_beats_chance_for_both_models(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "FE2E on the test split" in printed and "MESM / FE2E feature-extraction FLOPs" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"FE2E", "MESM"}
    for name, model in report["models"].items():
        test = model["test"]
        assert set(test["per_emotion"]) == {"anger", "happiness", "neutral", "sadness"}
        assert test["num_samples"] == 19
        # Chance: top-1 25% (4 balanced emotions), AUC 0.5.
        assert model["top1_accuracy"] >= 0.5, (name, model["top1_accuracy"])
        assert test["average"]["auc"] >= 0.75, (name, test["average"])
        gf = model["gflops_per_utterance"]
        assert gf["total"] == gf["a"] + gf["v"] > 0
        assert (out / "runs" / name.lower() / "best.safetensors").is_file()
    fe2e, mesm = (report["models"][n]["gflops_per_utterance"] for n in ("FE2E", "MESM"))
    assert fe2e["attention"] == 0 < mesm["attention"]
    assert report["flops_ratio"] == mesm["total"] / fe2e["total"] < 1
