"""prepare_mosei on a tiny fake raw release (segmented transcripts, MTurk label CSVs)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from mesm.data.manifest import read_dataset
from mesm.data.media.dataset import EmotionDataset
from mesm.data.media.preprocess import preprocess_dataset
from mesm.data.media.video import sample_frames
from mesm.data.prepare.mosei import MOSEI_LABELS, prepare_mosei
from mesm.demo.synthetic import speech_like, write_video

A, B, C = "-3g5yACwYnA", "-6rXp3zJ3kc", "--qXJuDtHPw"  # ids from the paper's split lists


def _tagged_frames(count: int) -> np.ndarray:
    frames = np.full((count, 64, 64, 3), 120, np.uint8)
    frames[:, :8] = (np.arange(count, dtype=np.uint8) * 6)[:, None, None, None]
    return frames


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "CMU_MOSEI"
    videos = root / "Videos" / "Full" / "Combined"
    audio = root / "Audio" / "Full" / "WAV_16000"
    texts = root / "Transcript" / "Segmented" / "Combined"
    for folder in (videos, audio, texts, root / "Labels"):
        folder.mkdir(parents=True)
    write_video(videos / f"{A}.mp4", _tagged_frames(40), 10)  # audio from the WAV
    sf.write(audio / f"{A}.wav", speech_like(4.0, 16000), 16000)
    write_video(videos / f"{B}.mp4", _tagged_frames(20), 10, speech_like(2.0, 16000))  # no WAV
    # C's video is missing: its segment must be reported, not silently lost.
    (texts / f"{A}.txt").write_text(
        f"{A}___2___0.0___1.0___Key Polymer brings a technical aspect.\n"
        f"{A}___3___1.0___2.5___We're a huge user of adhesives.\n"
        f"{A}___4___2.5___3.0___No annotation rows for this one.\n"
        f"{A}___5___3.0___3.5___Not in any split list.\n"
    )
    (texts / f"{B}.txt").write_text(f"{B}___3___0.5___1.5___It was sad, and surprising.\n")
    (texts / f"{C}.txt").write_text(f"{C}___5___0.0___1.0___Video file is missing.\n")
    # (video id as the CSVs store it, clip, anger, disgust, fear, happiness, sadness, surprise)
    rows = [
        (f"videos/{A}", 2, 0, 0, 0, 0, 0, 0),
        (f"videos/{A}", 2, 1, 0, 0, 0, 0, 0),
        (f"videos/{A}", 3, 0, 0, 0, 0, 0, 0),
        (f"videos/{A}", 5, 0, 0, 2, 0, 0, 0),
        (f"videos/{A}", 10, 0, 0, 0, 3, 0, 0),  # annotated but no transcript line
        (f"videos/{B}", 3, 0, 0, 0, 0, 1, 0),
        (f"videos/{B}", 3, 0, 0, 0, 0, 2, 1),
        (f"videos/{C}", 5, 0, 0, 0, 1, 0, 0),
    ]
    for part, chunk in enumerate((rows[:4], rows[4:])):
        with open(root / "Labels" / f"batch_{part}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["HITId", "Input.VIDEO_ID", "Input.CLIP", *(f"Answer.{n}" for n in MOSEI_LABELS)]
            )
            for row in chunk:
                writer.writerow(["hit", *row])
    return root


def test_prepare_cuts_segments_with_multi_labels_and_splits(release, tmp_path):
    out = tmp_path / "mosei"
    report = prepare_mosei(release, out, progress=False)
    assert report.kept == 3
    assert report.dropped == {
        "no labels": 1,
        "not in a split": 1,
        "no transcript": 1,
        "media error": 1,
    }
    assert f"{C}.mp4: missing" in report.failed[C]
    assert report.splits == {"train": 2, "valid": 0, "test": 1}
    info, records = read_dataset(out)
    assert info.task == "multi_label" and info.label_names == MOSEI_LABELS
    by_id = {r.id: r for r in records}
    assert sorted(by_id) == sorted([f"{A}_2", f"{A}_3", f"{B}_3"])
    assert by_id[f"{A}_2"].labels == ("anger",)  # one annotator said 1: sum > 0
    assert by_id[f"{A}_3"].labels == ()  # all annotators 0: kept, no emotion
    assert by_id[f"{B}_3"].labels == ("sadness", "surprise")
    assert {uid: r.split for uid, r in by_id.items()} == {
        f"{A}_2": "train",
        f"{A}_3": "train",
        f"{B}_3": "test",
    }
    assert by_id[f"{A}_3"].text == "We're a huge user of adhesives."
    spans = {f"{A}_2": (0.0, 1.0), f"{A}_3": (1.0, 2.5), f"{B}_3": (0.5, 1.5)}
    for uid, (start, end) in spans.items():
        frames = sample_frames(out / by_id[uid].video, interval_ms=100)
        assert len(frames.images) == round((end - start) * 10)
        assert round(frames.images[0][:6, 8:56].mean() / 6) == round(start * 10)
        wave, sr = sf.read(out / by_id[uid].audio)
        assert sr == 16000 and abs(len(wave) - (end - start) * 16000) <= 1


def test_prepared_mosei_batches_are_multi_hot(release, tmp_path):
    out = tmp_path / "mosei"
    prepare_mosei(release, out, progress=False)
    preprocess_dataset(out, progress=False)
    ds = EmotionDataset(out)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    assert batch["ids"] == [f"{A}_2", f"{A}_3", f"{B}_3"]  # the manifest is sorted by id
    expected = {f"{A}_2": [1, 0, 0, 0, 0, 0], f"{A}_3": [0] * 6, f"{B}_3": [0, 0, 0, 0, 1, 1]}
    assert batch["labels"].tolist() == [expected[uid] for uid in batch["ids"]]
    assert batch["face_lengths"].tolist() == [
        {f"{A}_2": 2, f"{A}_3": 3, f"{B}_3": 2}[u] for u in batch["ids"]
    ]
