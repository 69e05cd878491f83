"""The page's work on real files, without a browser: a clip, a long video, bad uploads."""

from __future__ import annotations

import csv
import io

import pytest
from matplotlib.image import imread

from mesm.app.analyse import ClipAnalyser, dataset_examples
from mesm.data.manifest import read_dataset
from mesm.inference.predict import Predictor

from .conftest import EMOTIONS, THRESHOLDS


@pytest.fixture(scope="module")
def analyser(mesm_checkpoint, tmp_path_factory):
    return ClipAnalyser(
        mesm_checkpoint, precision="32", work_dir=tmp_path_factory.mktemp("work"), keep_requests=2
    )


def _clip(demo_data):
    _, records = read_dataset(demo_data)
    record = next(r for r in records if r.audio is None)
    return demo_data / record.video, record.text


@pytest.mark.usefixtures("one_thread")
def test_a_clip_gives_the_predictors_probabilities_the_attention_image_and_the_flops(
    analyser, mesm_checkpoint, demo_data
):
    video, text = _clip(demo_data)
    out = analyser.analyse(str(video), text)
    assert out.ok, out.message
    expected = Predictor(mesm_checkpoint, precision="32").predict_clip(video, text)
    for name, threshold in zip(EMOTIONS, THRESHOLDS, strict=True):
        e = expected["emotions"][name]
        assert (
            f'data-emotion="{name}" data-probability="{e["probability"]:.6f}"' in out.probabilities
        )
        assert f'data-threshold="{threshold:.6f}"' in out.probabilities
    assert f"Most likely: **{expected['top']}**" in out.message
    image = imread(out.attention)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # FE2E with the same weights costs more at p = 0.7, and both counts are on the page.
    ratio = float(out.flops.split("**")[-2].rstrip("x"))
    assert 0 < ratio < 1 and "FE2E" in out.flops
    # Next to the maps: where the kept sites fall on the face, per layer.
    assert "Where the kept sites fall on the face" in out.flops and "| mouth |" in out.flops
    assert out.timeline_plot is None and out.timeline_csv is None
    message, bars, flops, attention, plot, table, faces = out.values()
    assert (message, bars, flops, attention) == (
        out.message,
        out.probabilities,
        out.flops,
        str(out.attention),
    )
    assert plot is None and table is None and faces is None


@pytest.mark.usefixtures("one_thread")
def test_a_subtitled_video_gives_the_timeline_plot_and_csv(analyser, subtitled_video):
    video, srt = subtitled_video
    out = analyser.analyse(str(video), "", str(srt))
    assert out.ok, out.message
    assert "2 segments" in out.message and "text: subtitles" in out.message
    assert "(talk.srt)" in out.message and str(srt.parent) not in out.message
    rows = list(csv.DictReader(io.StringIO(out.timeline_csv.read_text())))
    assert [r["text"] for r in rows] == ["I am so happy today", "this is the worst day"]
    assert [float(r["start"]) for r in rows] == [0.5, 3.0]
    assert set(rows[0]) >= {f"{name}_probability" for name in EMOTIONS}
    assert imread(out.timeline_plot).shape[1] > 500
    assert out.probabilities == "" and out.attention is None
    # The speaker's face by default: one face here, found in every frame, drawn boxed.
    assert "Faces: 0 of 2 segment(s) show several faces" in out.message
    assert "the chosen face found in 100% of the frames" in out.message
    assert [r["face_fallback"] for r in rows] == ["one face", "one face"]
    assert imread(out.faces).shape[0] > 100
    largest = analyser.analyse(str(video), "", str(srt), "largest")
    assert largest.faces is None and "face_track" not in largest.timeline_csv.read_text()


@pytest.mark.parametrize(
    ("kind", "transcript", "expected"),
    [
        ("corrupt", "hello", "corrupt.mp4 could not be read as a video"),
        ("silent", "hello", "silent.mp4 has no audio track"),
        ("clip", "   ", "The transcript is empty"),
    ],
)
def test_bad_uploads_give_a_readable_message(
    analyser, bad_videos, demo_data, kind, transcript, expected
):
    video = _clip(demo_data)[0] if kind == "clip" else bad_videos[kind]
    out = analyser.analyse(str(video), transcript)
    assert not out.ok
    assert out.message.startswith("**Error:** ") and expected in out.message
    assert "Traceback" not in out.message and str(video.parent) not in out.message
    assert out.probabilities == "" and out.attention is None


def test_old_request_folders_are_removed(analyser):
    for _ in range(3):
        analyser.analyse(None, "")
    folders = sorted(p.name for p in analyser.work_dir.iterdir())
    assert len(folders) == 2  # keep_requests


@pytest.mark.usefixtures("one_thread")
def test_fe2e_has_no_attention_or_flops(fe2e_checkpoint, demo_data, tmp_path):
    analyser = ClipAnalyser(fe2e_checkpoint, precision="32", work_dir=tmp_path)
    assert not analyser.is_mesm and analyser.dense is None
    out = analyser.analyse(*map(str, _clip(demo_data)))
    assert out.ok and out.attention is None and out.flops == ""
    assert out.probabilities.count('class="mesm-emotion"') == len(EMOTIONS)


def test_examples_are_clips_with_their_own_audio_test_split_first(demo_data):
    _, records = read_dataset(demo_data)
    examples = dataset_examples(demo_data, count=10)
    by_video = {str((demo_data / r.video).resolve()): r for r in records}
    chosen = [by_video[video] for video, _ in examples]
    assert chosen and all(r.audio is None for r in chosen)
    assert [text for _, text in examples] == [r.text for r in chosen]
    assert len(chosen) == sum(r.audio is None for r in records)
    splits = [r.split == "test" for r in chosen]
    assert splits == sorted(splits, reverse=True)
