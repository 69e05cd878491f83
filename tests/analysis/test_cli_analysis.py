"""`mesm flops`, `mesm sweep-p` and `mesm explain` through the command line."""

from __future__ import annotations

import json

from mesm.cli import main
from mesm.data.manifest import read_dataset


def test_flops_preset_and_checkpoint(dataset_dir, checkpoint, tmp_path, capsys):
    out = tmp_path / "preset.json"
    args = ["flops", "--preset", "tiny", "--frames", "2", "--chunks", "2", "--json", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert 0 < report["ratio"] < 1 and "ratio to FE2E" in printed
    seq = report["model"]["sequence_gflops_per_utterance"]
    assert f"sequence transformers {seq['total']:9.4f} GFLOPs/utterance" in printed
    assert main(["flops", "--checkpoint", str(checkpoint), "--data", str(dataset_dir)]) == 0
    assert "test split" in capsys.readouterr().out
    assert main(["flops", "--checkpoint", str(checkpoint)]) == 1
    assert "needs --data" in capsys.readouterr().err


def test_sweep_and_explain(dataset_dir, checkpoint, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = ["sweep-p", "--checkpoint", str(checkpoint), "--data", str(dataset_dir)]
    assert (
        main([*args, "--ps", "1.0", "0.5", "--out", str(sweep), "--json", str(tmp_path / "s.json")])
        == 0
    )
    result = json.loads((sweep / "sweep.json").read_text())
    assert [point["p"] for point in result["points"]] == [0.5, 1.0]
    assert json.loads((tmp_path / "s.json").read_text())["points"] == result["points"]
    assert (sweep / "sweep.png").stat().st_size > 10_000
    assert "FE2E" in capsys.readouterr().out

    _, records = read_dataset(dataset_dir)
    explained = tmp_path / "explain"
    args = ["explain", str(dataset_dir), "--checkpoint", str(checkpoint), "--out", str(explained)]
    assert main([*args, "--utterance", records[1].id]) == 0
    assert (explained / "overview.png").is_file() and (explained / "attention.json").is_file()
    assert "sites kept" in capsys.readouterr().out

    clip = dataset_dir / records[0].video  # carries its own audio track
    from_clip = tmp_path / "from_clip"
    args = ["explain", str(clip), "--checkpoint", str(checkpoint), "--out", str(from_clip)]
    assert main([*args, "--transcript", "hello there"]) == 0
    report = json.loads((from_clip / "attention.json").read_text())
    assert set(report["pathways"]) == {"visual", "audio"}
