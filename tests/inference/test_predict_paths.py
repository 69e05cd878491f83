"""One utterance, two roads: `Predictor.predict_clip` on the raw files and the dataset path
(cache → EmotionDataset → predict_split) give the same probabilities."""

from __future__ import annotations

import json

import numpy as np
import torch

from mesm.inference.evaluate import open_split, predict_split
from mesm.inference.predict import Predictor
from mesm.trained.precision import resolve_precision


def test_predict_clip_equals_the_dataset_path(trained, clips_dir):
    predictor = Predictor(trained, precision="32")
    dataset = open_split(clips_dir, "test", trained)
    with torch.autocast("cpu", enabled=False):
        probs, _ = predict_split(
            trained.model, dataset, batch_size=1, precision=resolve_precision("32")
        )
    records = [json.loads(line) for line in (clips_dir / "manifest.jsonl").read_text().splitlines()]
    assert {r["audio"] is None for r in records} == {True, False}  # both kinds of audio
    for record, row in zip(records, probs, strict=True):
        audio = None if record["audio"] is None else clips_dir / record["audio"]
        result = predictor.predict_clip(clips_dir / record["video"], record["text"], audio=audio)
        clip = [result["emotions"][n]["probability"] for n in trained.label_names]
        np.testing.assert_allclose(clip, row, rtol=0, atol=1e-6, err_msg=record["id"])
        assert result["preprocessing"]["frames"] > 0 and result["preprocessing"]["chunks"] > 0
