"""`mesm predict` on many clips: files, folders and manifests in, one CSV row per clip out."""

from __future__ import annotations

import csv
import json

import pytest

from mesm.cli import main
from mesm.demo.synthetic import face_frames, speech_like, write_synthetic_dataset, write_video
from mesm.errors import UsageError
from mesm.inference.batch import ClipInput, expand_inputs, predict_clips
from mesm.inference.predict import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A dataset folder of 4 clips (2 with a separate WAV) and a folder of 2 more videos."""
    root = tmp_path_factory.mktemp("batch")
    data = root / "data"
    write_synthetic_dataset(data, 4, duration=(1.0, 1.2), splits=())
    videos = root / "videos"
    videos.mkdir()
    for i in (2, 10):  # natural order: clip2 before clip10
        write_video(videos / f"clip{i}.mp4", face_frames(10, 10, seed=i), 10, speech_like(1.0))
    return root


def test_inputs_expand_from_files_folders_and_manifests(clips, tmp_path):
    data, videos = clips / "data", clips / "videos"
    got = expand_inputs([videos, data / "clips" / "utt0000.mp4", tmp_path / "missing.mp4"])
    assert [c.clip.name for c in got] == ["clip2.mp4", "clip10.mp4", "utt0000.mp4", "missing.mp4"]
    # A mesm dataset manifest: video, separate audio, text.
    listed = expand_inputs([data / "manifest.jsonl"])
    records = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    assert [c.clip for c in listed] == [data / r["video"] for r in records]
    assert [c.transcript for c in listed] == [r["text"] for r in records]
    assert [c.audio for c in listed] == [r["audio"] and data / r["audio"] for r in records]
    table = tmp_path / "list.csv"
    table.write_text(f"clip,transcript\n{videos / 'clip2.mp4'},so happy today\n")
    assert expand_inputs([table]) == [ClipInput(videos / "clip2.mp4", "so happy today")]
    text_list = tmp_path / "list.txt"
    text_list.write_text(f"# clips\n{videos / 'clip10.mp4'}\n\n")
    assert expand_inputs([text_list]) == [ClipInput(videos / "clip10.mp4")]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\nx.mp4,hi\n")
    with pytest.raises(UsageError, match=r"bad\.csv: the CSV needs a 'clip'"):
        expand_inputs([bad])
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"clip": "a.mp4"}\n{"clip": \n')
    with pytest.raises(UsageError, match=r"bad\.jsonl: line 2: not JSON"):
        expand_inputs([bad_json])


def test_batch_gives_one_row_per_clip_and_keeps_going_past_bad_files(
    clips, tiny_checkpoint, tmp_path, capsys
):
    data, videos = clips / "data", clips / "videos"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video")
    out = tmp_path / "all.csv"
    inputs = [str(videos), str(data / "manifest.jsonl"), str(broken), str(tmp_path / "gone.mp4")]
    code = main(["predict", *inputs, "--checkpoint", str(tiny_checkpoint), "--csv", str(out)])
    assert code == 1
    printed = capsys.readouterr()
    assert f"failed: {broken}: record 'broken'" in printed.err
    assert f"failed: {tmp_path / 'gone.mp4'}: no clip at" in printed.err
    assert "2 of 8 input(s) failed" in printed.err
    assert "6 of 8 input(s) predicted, 6 row(s)" in printed.out
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip"].rsplit("/", 1)[-1] for r in rows] == [
        "clip2.mp4",
        "clip10.mp4",
        "utt0000.mp4",
        "utt0001.mp4",
        "utt0002.mp4",
        "utt0003.mp4",
    ]
    records = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows[2:]] == [r["text"] for r in records]
    assert all(r["source"] == "clip" and r["start"] == "" and int(r["frames"]) > 0 for r in rows)
    # Same numbers as predicting each clip on its own.
    predictor = Predictor(tiny_checkpoint)
    alone = predictor.predict_clip(
        data / "clips" / "utt0001.mp4", records[1]["text"], audio=data / records[1]["audio"]
    )
    prob = alone["emotions"]["sadness"]["probability"]
    assert float(rows[3]["sadness_probability"]) == pytest.approx(prob, abs=1e-6)
    assert rows[3]["top"] == alone["top"]


def test_predict_clips_reports_failures_through_the_callback(clips, tiny_checkpoint, tmp_path):
    seen = []
    rows, failures = predict_clips(
        Predictor(tiny_checkpoint),
        [ClipInput(tmp_path / "nothing.mp4"), ClipInput(clips / "videos" / "clip2.mp4")],
        transcript="hello",
        progress=False,
        on_failure=lambda path, reason: seen.append((str(path), reason)),
    )
    assert [r["text"] for r in rows] == ["hello"] and failures == seen
    assert failures[0][0].endswith("nothing.mp4") and "no clip at" in failures[0][1]


@pytest.mark.parametrize("word", ["notes.txt", "happy/sad"])
def test_a_one_word_text_is_the_text_for_several_clips_as_for_one(
    word, clips, tiny_checkpoint, tmp_path, capsys
):
    """`--text` is the words themselves: a one-word text that looks like a path is never read
    as a file, with several clips as with one (the batch once passed it through the old
    `--transcript` reader a second time and failed)."""
    videos = clips / "videos"
    one, several = tmp_path / "one.csv", tmp_path / "several.csv"
    ckpt = ["--checkpoint", str(tiny_checkpoint), "--text", word, "--no-progress"]
    assert main(["predict", str(videos / "clip2.mp4"), *ckpt, "--csv", str(one)]) == 0
    assert main(["predict", str(videos), *ckpt, "--csv", str(several)]) == 0
    assert "error" not in capsys.readouterr().err
    with open(one, newline="") as fh, open(several, newline="") as fh2:
        alone, batch = list(csv.DictReader(fh)), list(csv.DictReader(fh2))
    assert [r["text"] for r in alone] == [word]
    assert [r["text"] for r in batch] == [word, word]
    assert batch[0]["anger_probability"] == alone[0]["anger_probability"]


@pytest.mark.parametrize("bug", [TypeError("bad operand"), KeyError("faces"), ValueError("x")])
def test_a_bug_while_predicting_a_clip_propagates_instead_of_counting_as_a_failed_clip(
    bug, clips, tiny_checkpoint, tmp_path, monkeypatch
):
    from bad_inputs import CASES

    predictor = Predictor(tiny_checkpoint)
    videos = [ClipInput(clips / "videos" / "clip2.mp4"), ClipInput(clips / "videos" / "clip10.mp4")]
    calls = []

    def planted(tensors, text):
        calls.append(text)
        raise bug

    monkeypatch.setattr(predictor, "predict", planted)
    seen = []
    with pytest.raises(type(bug)):
        predict_clips(predictor, videos, progress=False, on_failure=lambda *a: seen.append(a))
    assert calls == [""] and seen == []  # the first clip's bug stopped the run: nothing counted
    # A bad input is still counted: a missing file fails as one item, the others go on.
    monkeypatch.undo()
    rows, failures = predict_clips(
        predictor, [ClipInput(tmp_path / "gone.mp4"), *videos], progress=False
    )
    assert len(rows) == 2 and [f[0] for f in failures] == [str(tmp_path / "gone.mp4")]
    assert CASES["bug-not-counted"].outcome.startswith("propagates")


def test_a_prediction_decides_present_by_the_paper_rule_float32_strictly_above(trained):
    import numpy as np
    import torch

    tie = float(np.float32(0.4))  # hap's threshold is 0.4; in float64 this is above it
    tensors = {
        "faces": torch.zeros(1, 3, 48, 48),
        "found": torch.zeros(1, dtype=torch.uint8),
        "specs": torch.zeros(1, 1, 128, 32),
        "timestamps": torch.zeros(1),
    }
    predictor = Predictor(trained)
    assert predictor.thresholds == [0.5, 0.4, 0.5, 0.6]
    result = predictor.result(tensors, "", [0.5, tie, 0.5, 0.6])
    assert result["present"] == []  # every probability equals its threshold
    result = predictor.result(tensors, "", [0.51, 0.41, 0.2, 0.61])
    assert result["present"] == ["ang", "hap", "sad"]
