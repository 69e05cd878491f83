"""Whole videos in, an emotion timeline out: subtitles, voice activity, ASR, the files written."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from mesm.cli import main
from mesm.data.media.segments import Segment, VadSettings
from mesm.data.media.stream import iter_segment_media
from mesm.inference.predict import Predictor
from mesm.inference.video import BLANK_TEXT_WARNING, find_segments, predict_video

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return Predictor(tiny_checkpoint)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_subtitles_give_one_row_per_cue_with_its_times_and_text(
    spoken_video, tiny_checkpoint, tmp_path, capsys
):
    video, srt, spans = spoken_video
    out = tmp_path / "timeline"
    args = ["predict", str(video), "--checkpoint", str(tiny_checkpoint), "--subtitles", str(srt)]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "12 cues -> 12 segments" in printed.out
    assert "text modality is blank" not in printed.err
    rows = _read_csv(out / "timeline.csv")
    assert len(rows) == len(spans)
    for row, (start, end, sentence) in zip(rows, spans, strict=True):
        assert float(row["start"]) == pytest.approx(start, abs=1e-3)
        assert float(row["end"]) == pytest.approx(end, abs=1e-3)
        assert row["text"] == sentence
        # One face crop every 500 ms of the cue (5 fps frames) and ~0.4 s per mel chunk.
        assert int(row["frames"]) == pytest.approx((end - start) / 0.5, abs=1)
        assert int(row["chunks"]) == pytest.approx((end - start) / 0.4, abs=1)
    # Each decision is the paper's rule (strictly above the emotion's threshold), on every
    # emotion; the thresholds 0.4 and 0.6 make both decisions occur, so the check has teeth.
    names = ["anger", "happiness", "neutral", "sadness"]
    thresholds = dict(zip(names, [0.5, 0.4, 0.5, 0.6], strict=True))
    decisions = set()
    for row in rows:
        for emotion, threshold in thresholds.items():
            p = float(row[f"{emotion}_probability"])
            assert 0 < p < 1 and abs(p - threshold) > 1e-6  # 6 printed digits decide it
            assert row[f"{emotion}_present"] == str(int(p > threshold))
            decisions.add(row[f"{emotion}_present"])
    assert decisions == {"0", "1"}
    report = json.loads((out / "timeline.json").read_text())
    assert report["text_source"] == "subtitles" and report["thresholds"] == [0.5, 0.4, 0.5, 0.6]
    assert [s["text"] for s in report["segments"]] == [s for _, _, s in spans]
    assert report["segmentation"]["found"] == 12 and report["warnings"] == []
    png = (out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_vad_segments_end_within_300_ms_of_the_silences(spoken_video):
    video, _, spans = spoken_video
    segments, report = find_segments(video)
    bounds = [(s.start, s.end) for s in segments]
    assert len(segments) == len(spans), bounds
    for (start, end, _), (got_start, got_end) in zip(spans, bounds, strict=True):
        assert abs(got_start - start) <= 0.3, (got_start, start)
        assert abs(got_end - end) <= 0.3, (got_end, end)
    assert report.method == "vad" and report.segments == len(spans)
    assert all(s.text == "" and s.source == "speech" for s in segments)


def test_vad_caps_segment_length(spoken_video):
    video, _, spans = spoken_video
    # Pauses of 1.4 s or more no longer split; long speech is cut at 8 s instead.
    segments, report = find_segments(video, vad=VadSettings(min_silence=3, max_segment=8))
    lengths = [s.end - s.start for s in segments]
    assert max(lengths) <= 8 + 0.11  # + the 50 ms padding on each side
    assert len(segments) >= (spans[-1][1] - spans[0][0]) / 8
    assert report.split_long == len(segments) - report.found > 0
    assert "long speech split" in report.summary()


def test_vad_timeline_has_a_row_per_segment_and_warns_of_blank_text(short_spoken_video, predictor):
    video, _, spans = short_spoken_video
    timeline = predict_video(predictor, video, progress=False)
    assert [r["segment"] for r in timeline.rows] == [0, 1]
    for row, (start, end, _) in zip(timeline.rows, spans, strict=True):
        assert abs(row["start"] - start) <= 0.3 and abs(row["end"] - end) <= 0.3
        assert row["text"] == "" and row["frames"] >= 2 and row["faces_found"] <= row["frames"]
        assert set(row["emotions"]) == {"anger", "happiness", "neutral", "sadness"}
    assert timeline.warnings == [BLANK_TEXT_WARNING]
    assert timeline.duration == pytest.approx(8, abs=0.1)


def test_segment_media_equals_the_clip_path(spoken_video, predictor):
    """Streaming one pass over the video gives each segment exactly the frames and features
    that preprocessing a record with that span gives."""
    video, _, spans = spoken_video
    segments = [Segment(round(a, 3), round(b, 3)) for a, b, _ in spans[:3]]
    media = list(iter_segment_media(video, segments))
    assert [m.segment for m in media] == segments
    for item in media:
        streamed = predictor.media_features(item)
        direct = predictor.clip_features(video, start=item.segment.start, end=item.segment.end)
        np.testing.assert_array_equal(streamed["timestamps"], direct["timestamps"])
        np.testing.assert_array_equal(streamed["faces"], direct["faces"])
        # The clip path seeks to 1 s before the span, and an AAC decoder restarted after a seek
        # is not bit-identical to one that decoded from the start: equal up to that noise.
        assert streamed["specs"].shape == direct["specs"].shape
        diff = np.linalg.norm(streamed["specs"] - direct["specs"])
        assert diff <= 1e-3 * np.linalg.norm(direct["specs"])


def test_transcribe_uses_a_speech_recognition_model(short_spoken_video, predictor, tmp_path):
    import torch
    from transformers import pipeline

    from mesm.data.media.audio import resample

    video, _, spans = short_spoken_video
    model_dir = _tiny_asr_model(tmp_path / "asr")
    timeline = predict_video(predictor, video, transcribe=str(model_dir), progress=False)
    assert timeline.text_source == f"asr:{model_dir}" and timeline.warnings == []
    assert len(timeline.rows) == len(spans)
    # The text of a segment is what the model hears in that segment's audio.
    asr = pipeline("automatic-speech-recognition", model=str(model_dir))
    row = timeline.rows[1]
    segment = Segment(row["start"], row["end"])
    (media,) = iter_segment_media(video, [segment])
    wave = resample(torch.from_numpy(media.waveform), media.sample_rate, 16000).numpy()
    expected = asr({"raw": wave, "sampling_rate": 16000})["text"]
    assert row["text"] == " ".join(expected.split()) != ""
    assert timeline.rows[0]["text"] != row["text"]


def _tiny_asr_model(folder):
    """A random-init CTC speech model with its processor, saved like a hub model."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder.mkdir(parents=True)
    letters = "abcdefghijklmnopqrstuvwxyz'"
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({c: i + 5 for i, c in enumerate(letters)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(10, 16),
        conv_kernel=(10, 16),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    return folder


def test_bad_subtitles_fail_clearly_and_batch_keeps_going(
    short_spoken_video, tiny_checkpoint, tmp_path, capsys
):
    video, srt, _ = short_spoken_video
    broken = tmp_path / "broken.srt"
    lines = srt.read_text().splitlines()
    lines[5] = "00:00:0x,000 --> 00:00:09,000"  # the second cue's timing line
    broken.write_text("\n".join(lines) + "\n")
    args = ["predict", str(video), "--checkpoint", str(tiny_checkpoint), "--no-progress"]
    assert main([*args, "--subtitles", str(broken), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"{broken}: line 6: unreadable cue timing" in err and "1 of 1 input(s) failed" in err
    assert not (tmp_path / "o" / "timeline.csv").exists()
    # --subtitles with --transcribe, or without --out: one clear line, status 1.
    assert main([*args, "--subtitles", str(srt), "--transcribe", "x", "--out", "o"]) == 1
    assert "not both" in capsys.readouterr().err
    # Several videos: a bad one is reported, the others still get their timelines.
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(video, folder / "a.mp4")
    (folder / "b.mp4").write_bytes(b"not a video")
    out = tmp_path / "many"
    many = ["predict", str(video), str(folder), *args[2:], "--out", str(out)]
    code = main(many)
    assert code == 1
    printed = capsys.readouterr()
    assert f"failed: {folder / 'b.mp4'}" in printed.err and "1 of 3 input(s) failed" in printed.err
    assert (out / "talk" / "timeline.png").is_file() and (out / "a" / "timeline.csv").is_file()


@pytest.mark.parametrize("face", ["largest", "speaker"])
def test_several_videos_read_the_face_they_were_asked_for(spoken_video, predictor, tmp_path, face):
    """`predict_videos` (the path of `mesm predict --out`) passes the face choice to every video
    (`--face largest` was once lost there: each video fell back to the speaker's face)."""
    from mesm.inference.batch import ClipInput
    from mesm.inference.video import predict_videos

    video, srt, _ = spoken_video
    (outcome,) = predict_videos(
        predictor, [ClipInput(video)], tmp_path, subtitles=srt, progress=False, face=face
    )
    assert outcome.failure is None and outcome.timeline.face == face
    report = json.loads(outcome.files["json"].read_text())
    assert ("face" in report) == (face == "speaker")  # the speaker's summary, largest: none
