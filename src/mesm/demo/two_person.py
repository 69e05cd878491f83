"""The demo's two-person video: whose face does the timeline read?

`run_two_person` writes ``video/two.mp4`` + ``two.srt`` (`write_two_person_video`: the demo's face
on the left, larger, and a second face on the right, speaking in turns, one cue per turn), predicts
its timeline with a trained checkpoint twice — cropping the speaker's face (``face="speaker"``)
and the largest face (``face="largest"``, the paper's rule) — writes both timelines, and counts:

* in how many turns the speaker's track was chosen (the chosen box lies on the speaking person;
  a fallback to the largest face does not count);
* in how many turns the timeline's most likely emotion is the speaking person's, with either rule;
* how much the probabilities differ between the two rules (mean absolute difference over the turns
  and emotions): how much the model's answer depends on the face it reads at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mesm.data.media.vad import torch_threads
from mesm.demo.corpus import EMOTIONS, person_at, write_two_person_video
from mesm.inference.outputs import Timeline, write_timeline
from mesm.inference.predict import Predictor
from mesm.inference.video import predict_video
from mesm.trained.checkpoint import TrainedModel
from mesm.trained.precision import Precision


def demo_turns(count: int, seed: int) -> list[tuple[int, str]]:
    """`count` turns, the two people alternating (the right one first: the largest face is
    then the listener's from the start), each turn's emotion drawn at random and different
    from the listener's last one."""
    rng = np.random.default_rng(seed)
    turns: list[tuple[int, str]] = []
    last = {0: "neutral", 1: "neutral"}
    for i in range(count):
        speaker = (i + 1) % 2
        emotion = str(rng.choice([e for e in EMOTIONS if e != last[1 - speaker]]))
        turns.append((speaker, emotion))
        last[speaker] = emotion
    return turns


def run_two_person(
    out: Path,
    checkpoint: str | Path | TrainedModel,
    turns: int,
    *,
    seed: int,
    precision: Precision,
    model: str = "",
    progress: bool = False,
) -> dict[str, Any]:
    """Writes the video, its two timelines (``two-person/speaker``, ``two-person/largest``) and
    returns the counts (the report's ``two_person`` entry; `model` names the checkpoint's model
    there)."""
    video, subtitles, truth = write_two_person_video(
        out / "video" / "two.mp4", demo_turns(turns, seed), seed=seed + 2
    )
    # MTCNN on a few small frames per segment: a second thread only adds synchronisation.
    with torch_threads(1):
        report = _predict_both(out, checkpoint, video, subtitles, truth, precision, progress)
    return {"model": model, **report}


def _predict_both(
    out: Path,
    checkpoint: str | Path | TrainedModel,
    video: Path,
    subtitles: Path,
    truth: list[dict],
    precision: Precision,
    progress: bool,
) -> dict[str, Any]:
    predictor = Predictor(checkpoint, precision=precision)
    report: dict[str, Any] = {"video": str(video), "subtitles": str(subtitles), "turns": len(truth)}
    probabilities = {}
    for face in ("speaker", "largest"):
        timeline = predict_video(
            predictor, video, subtitles=subtitles, face=face, progress=progress
        )
        probabilities[face] = np.array(
            [[e["probability"] for e in row["emotions"].values()] for row in timeline.rows]
        )
        files = write_timeline(timeline, out / "two-person" / face)
        report[face] = {"timeline": str(files["png"]), **_agreement(timeline, truth)}
        if face == "speaker":
            report[face].update(_speaker_chosen(timeline, truth))
            report[face]["summary"] = timeline.face_summary
    change = np.abs(probabilities["speaker"] - probabilities["largest"])
    report["probability_change"] = float(change.mean()) if change.size else 0.0
    report["emotions"] = [t["emotion"] for t in truth]
    report["speakers"] = [t["speaker"] for t in truth]
    return report


def _agreement(timeline: Timeline, truth: list[dict]) -> dict[str, Any]:
    """How often the most likely emotion is the speaking person's."""
    tops = [row.get("top") for row in timeline.rows]
    agree = sum(1 for top, turn in zip(tops, truth, strict=True) if top == turn["emotion"])
    return {"agree": agree, "agreement": agree / max(len(truth), 1), "top": tops}


def _speaker_chosen(timeline: Timeline, truth: list[dict]) -> dict[str, Any]:
    """In how many turns the chosen face is the speaking person's (chosen by its score)."""
    chosen, fallbacks = 0, 0
    for row, turn in zip(timeline.rows, truth, strict=True):
        face = row["face"]
        if face["fallback"]:
            fallbacks += 1
        elif (
            face["box"] is not None
            and person_at((face["box"][0] + face["box"][2]) / 2) == (turn["speaker"])
        ):
            chosen += 1
    return {"speaker_chosen": chosen, "fallbacks": fallbacks}
