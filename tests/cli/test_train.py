"""`mesm train` and `mesm evaluate` through the command line on a generated dataset."""

from __future__ import annotations

import json

from helpers import TINY_TEXT_SETS
from mesm.cli import main
from mesm.demo.synthetic import write_synthetic_dataset
from mesm.inference.evaluate import evaluate_checkpoint


def test_train_then_evaluate(tmp_path, capsys):
    data = tmp_path / "data"
    write_synthetic_dataset(data, 8, duration=(1.0, 1.2))
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  preset: tiny\n  arch: fe2e\ntrainer:\n  max_epochs: 1\n")
    run = tmp_path / "run"
    sets = [f"data.path={data}", "data.batch_size=4", *TINY_TEXT_SETS]
    args = ["train", "--config", str(config), "--out", str(run)]
    assert main(args + [x for s in sets for x in ("--set", s)]) == 0
    printed = capsys.readouterr().out
    assert "test (2 utterances)" in printed and "best.safetensors" in printed
    assert (run / "config.yaml").read_text().count("max_epochs: 1") == 1

    out = tmp_path / "eval.json"
    ckpt = run / "best.safetensors"
    assert (
        main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--json", str(out)]) == 0
    )
    report = json.loads(out.read_text())
    assert report["split"] == "test" and report["num_samples"] == 2
    assert list(report["per_emotion"]) == ["ang", "hap", "neu", "sad"]
    direct = evaluate_checkpoint(ckpt, data, "test")
    assert report["average"]["f1"] == direct["average"]["f1"]
    assert "Acc" in capsys.readouterr().out

    # Training into a used folder, or evaluating a missing file: one clear line, exit code 1.
    assert main([*args, "--set", f"data.path={data}"]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert (
        main(["evaluate", "--checkpoint", str(tmp_path / "no.safetensors"), "--data", str(data)])
        == 1
    )
    assert "no checkpoint" in capsys.readouterr().err


def test_the_precision_flag_reaches_train_as_a_precision(tmp_path, monkeypatch, capsys):
    """`--precision 32` is resolved once, passed to `train` as a Precision and recorded in the
    run config as the string asked for (it once went through `--set`, where YAML read 32 as a
    number and the run config refused it)."""
    from types import SimpleNamespace

    import mesm.training.fit as fit
    from mesm.trained.precision import Precision

    seen = {}

    def fake_train(config, out, **kwargs):
        seen.update(config=config, **kwargs)
        return SimpleNamespace(metrics={}, checkpoint=out / "best.safetensors", run_dir=out)

    monkeypatch.setattr(fit, "train", fake_train)
    run = tmp_path / "run"
    assert (
        main(["train", "--out", str(run), "--precision", "32", "--set", "model.preset=tiny"]) == 0
    )
    assert isinstance(seen["precision"], Precision) and seen["precision"].lightning == "32-true"
    assert seen["config"].trainer.precision == "32"
    assert f"run folder: {run}" in capsys.readouterr().out
