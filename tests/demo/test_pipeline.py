"""The quick demo end to end: both models learn the synthetic corpus well above chance."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest


def test_quick_demo_beats_chance_for_both_models(quick_demo):
    root, printed = quick_demo
    out = root / "mesm-demo"
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
        assert gf["total"] == pytest.approx(gf["a"] + gf["v"], rel=1e-12) and gf["total"] > 0
        assert (out / "runs" / name.lower() / "best.safetensors").is_file()
    fe2e, mesm = (report["models"][n]["gflops_per_utterance"] for n in ("FE2E", "MESM"))
    assert fe2e["attention"] == 0 < mesm["attention"]
    assert report["flops_ratio"] == mesm["total"] / fe2e["total"] < 1
    # Two people in turns: the speaker's face is found and chosen (the full demo reports the
    # rate on 16 turns; docs/speaker-face.md), both timelines are written.
    two = report["two_person"]
    assert two["turns"] == 10 and len(two["emotions"]) == len(two["speakers"]) == 10
    assert two["model"] == "FE2E"
    assert two["speaker"]["speaker_chosen"] >= 8, two["speaker"]
    for face in ("speaker", "largest"):
        assert Path(two[face]["timeline"]).stat().st_size > 10_000
        assert 0 <= two[face]["agree"] <= 10 and len(two[face]["top"]) == 10
    assert "read by FE2E: the speaker's face chosen in" in printed
    overview = out / "attention" / "overview.png"
    assert report["attention_maps"]["overview"] == str(overview) and overview.stat().st_size > 0
    assert "attention maps" in printed
    # Attention per facial region: MESM's kept sites, FE2E's saliency, on the test split.
    regions = report["regions"]
    assert (regions["MESM"]["source"], regions["FE2E"]["source"]) == ("attention", "saliency")
    for name in ("mesm", "fe2e"):
        assert (out / "regions" / name / "regions.csv").is_file()
    assert set(regions["MESM"]["mouth_brows"]) == {"0", "1", "2"}
    for layer, v in regions["MESM"]["mouth_brows"].items():
        assert regions["mesm_mouth_brows_enriched"][layer] == (v["lo"] > 1)  # finite here
        assert v["lo"] <= v["enrichment"] <= v["hi"] and v["utterances"] == 19
    assert "mouth + brows hold" in printed
    # The last line is the command that serves the demo's MESM (a valid `mesm serve` command).
    assert printed.rstrip().splitlines()[-1] == report["serve_command"]
    from mesm.cli import build_parser

    args = build_parser().parse_args(shlex.split(report["serve_command"])[1:])
    assert Path(args.checkpoint) == out / "runs" / "mesm" / "best.safetensors"
    assert Path(args.examples) == out / "data" and args.host == "127.0.0.1"


def test_quick_demo_keeps_what_its_tour_uses_and_says_how_large_it_is(quick_demo):
    root, printed = quick_demo
    out = root / "mesm-demo"
    report = json.loads((out / "report.json").read_text())
    # Lightning's checkpoints (optimiser state of the whole model) are gone; the models stay.
    assert sorted(p.name for p in out.rglob("*.ckpt")) == []
    for name, model in report["models"].items():
        assert model["removed_checkpoints"] == ["best.ckpt", "last.ckpt"], name
        assert (out / "runs" / name.lower() / "best.safetensors").is_file()
    files = [f for f in out.rglob("*") if f.is_file() and f != out / "report.json"]
    assert report["folder_bytes"] == sum(f.stat().st_size for f in files)
    assert f"{out}: {report['folder_bytes'] / 1e6:.0f} MB" in printed
