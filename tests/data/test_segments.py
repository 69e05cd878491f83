"""Segments of whole videos: subtitle cues (every rule, every bad file) and VAD segmentation."""

from __future__ import annotations

import numpy as np
import pytest

from bad_inputs import CASES
from mesm.cli import error_message
from mesm.data.errors import DataError
from mesm.data.media.segments import Segment, VadSettings, read_subtitles, speech_segments
from mesm.errors import OptionError

SRT = """1
00:00:01,000 --> 00:00:02,500
Hello <i>there</i>,
how are you?

2
00:00:03,000 --> 00:00:04,000
Fine.

3
00:00:05,000 --> 00:00:07,000
Good to hear.
"""


def _write(tmp_path, text, name="subs.srt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_srt_cues_become_segments_with_their_times_and_plain_text(tmp_path):
    segments, report = read_subtitles(_write(tmp_path, SRT), duration=10)
    assert segments == [
        Segment(1.0, 2.5, "Hello there, how are you?", "cue 1"),
        Segment(3.0, 4.0, "Fine.", "cue 2"),
        Segment(5.0, 7.0, "Good to hear.", "cue 3"),
    ]
    assert (report.found, report.segments, report.method) == (3, 3, "subtitles")
    assert report.summary().endswith("3 cues -> 3 segments")


def test_webvtt_and_ass_are_read_too(tmp_path):
    vtt = "WEBVTT\n\n00:01.000 --> 00:02.500\nHello\n\n00:03.000 --> 00:04.000 align:start\nYo\n"
    segments, _ = read_subtitles(_write(tmp_path, vtt, "a.vtt"))
    assert [(s.start, s.end, s.text) for s in segments] == [(1.0, 2.5, "Hello"), (3.0, 4.0, "Yo")]
    ass = (
        "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontsize\n"
        "Style: Default,20\n\n[Events]\n"
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
        "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\i1}Hi{\\i0}\\Nthere\n"
        "Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,a note, not speech\n"
        "Dialogue: 0,0:00:04.00,0:00:05.50,Default,,0,0,0,,Bye\n"
    )
    segments, report = read_subtitles(_write(tmp_path, ass, "a.ass"))
    assert [(s.start, s.end, s.text) for s in segments] == [(1, 2, "Hi there"), (4, 5.5, "Bye")]
    assert report.found == 2  # the comment line is not a cue


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("this is not a subtitle file at all", "not a subtitle file pysubs2 can read"),
        (
            SRT.replace("00:00:03,000 --> 00:00:04,000", "00:00:0x,000 --> 00:00:04,000"),
            "line 7: unreadable cue timing '00:00:0x,000 --> 00:00:04,000'",
        ),
        (
            SRT.replace("00:00:05,000 --> 00:00:07,000", "00:00:07,000 --> 00:00:05,000"),
            "cue 3 (00:00:07.000 --> 00:00:05.000) does not end after it starts",
        ),
        ("", "no subtitle cues"),
    ],
    ids=["garbage", "broken-timing-line", "ends-before-start", "empty"],
)
def test_a_corrupt_cue_file_is_a_clear_error(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=r"subs\.srt") as err:
        read_subtitles(path, duration=10)
    assert message in str(err.value)


def test_missing_or_undecodable_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no subtitle file at"):
        read_subtitles(tmp_path / "none.srt")
    path = tmp_path / "bad.srt"
    path.write_bytes(SRT.encode() + b"\n5\n00:00:09,000 --> 00:00:09,900\nbad \x81 byte\n")
    with pytest.raises(DataError, match=CASES["text-not-decodable"].message) as err:
        read_subtitles(path)
    assert str(err.value).startswith(f"{path}:16: ")


@pytest.mark.parametrize(
    ("encoding", "bom", "reported"),
    [
        ("latin-1", b"", "read as cp1252 (not UTF-8)"),
        ("cp1252", b"", "read as cp1252 (not UTF-8)"),
        ("utf-16-le", b"\xff\xfe", "read as utf-16-le (not UTF-8)"),
        ("utf-16-be", b"\xfe\xff", "read as utf-16-be (not UTF-8)"),
        ("utf-8", b"\xef\xbb\xbf", "read as utf-8-sig (not UTF-8)"),
    ],
)
def test_subtitles_in_other_encodings_are_read_and_the_encoding_reported(
    tmp_path, encoding, bom, reported
):
    path = tmp_path / "other.srt"
    path.write_bytes(bom + SRT.replace("Fine", "Très bien").encode(encoding))
    segments, report = read_subtitles(path)
    assert "Très bien" in " ".join(s.text for s in segments)  # not mojibake
    assert segments == read_subtitles(_write(tmp_path, SRT.replace("Fine", "Très bien")))[0]
    assert CASES["subtitles-other-encoding"].message in reported and reported in report.notes


def test_utf16_without_its_mark_is_refused_naming_the_encoding(tmp_path):
    path = tmp_path / "nobom.srt"
    path.write_bytes(SRT.encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16 without a byte-order mark"):
        read_subtitles(path)


@pytest.mark.parametrize(
    ("timing", "line"),
    [("-00:00:03,000 --> 00:00:04,000", 7), ("00:00:03,000 --> -00:00:04,000", 7)],
)
def test_a_negative_subtitle_time_is_refused_naming_the_cue(tmp_path, timing, line):
    path = _write(tmp_path, SRT.replace("00:00:03,000 --> 00:00:04,000", timing))
    with pytest.raises(DataError, match=CASES["subtitle-negative-time"].message) as err:
        read_subtitles(path)
    assert f"{path}: line {line}: cue 2 " in str(err.value)


def test_cues_outside_the_video_are_skipped_or_cut_and_counted(tmp_path):
    segments, report = read_subtitles(_write(tmp_path, SRT), duration=6.0)
    assert [(s.start, s.end) for s in segments] == [(1.0, 2.5), (3.0, 4.0), (5.0, 6.0)]
    assert (report.clipped, report.skipped_outside) == (1, 0)
    segments, report = read_subtitles(_write(tmp_path, SRT), duration=4.5)
    assert [s.source for s in segments] == ["cue 1", "cue 2"]
    assert (report.clipped, report.skipped_outside) == (0, 1)
    assert "1 skipped (after the video's end)" in report.summary()
    assert any("cue 3 starts at 00:00:05.000, after the video's end" in n for n in report.notes)
    with pytest.raises(DataError, match="no cue left inside the video"):
        read_subtitles(_write(tmp_path, SRT), duration=0.5)


def test_overlapping_cues_are_an_error_or_merged_and_counted(tmp_path):
    text = SRT.replace("00:00:03,000 --> 00:00:04,000", "00:00:02,000 --> 00:00:04,000")
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_subtitles(path)
    assert "cue 1 (00:00:01.000 --> 00:00:02.500) and cue 2 (00:00:02.000 --> 00:00:04.000)" in (
        str(err.value)
    )
    assert "overlap" in str(err.value) and str(path) in str(err.value)
    segments, report = read_subtitles(path, overlaps="merge")
    assert segments[0] == Segment(1.0, 4.0, "Hello there, how are you? Fine.", "cues 1+2")
    assert report.merged_overlap == 1 and report.segments == 2


def test_short_cues_merge_with_a_near_neighbour_or_are_skipped(tmp_path):
    text = (
        "1\n00:00:01,000 --> 00:00:02,000\nOne\n\n"
        "2\n00:00:02,100 --> 00:00:02,300\nuh\n\n"  # short, 0.1 s after cue 1: merged into it
        "3\n00:00:05,000 --> 00:00:06,000\nThree\n\n"
        "4\n00:00:09,000 --> 00:00:09,200\nhm\n"  # short, 3 s from anything: skipped
    )
    segments, report = read_subtitles(_write(tmp_path, text), min_duration=0.5)
    assert segments == [
        Segment(1.0, 2.3, "One uh", "cues 1+2"),
        Segment(5.0, 6.0, "Three", "cue 3"),
    ]
    assert (report.merged_short, report.skipped_short, report.segments) == (1, 1, 2)


def _probs(spans, length, step=0.032, level=0.9):
    """Window probabilities: `level` inside the (start, end) second spans, 0.05 elsewhere."""
    p = np.full(length, 0.05)
    for a, b in spans:
        p[round(a / step) : round(b / step)] = level
    return p


def test_speech_segments_split_at_pauses_and_drop_short_bursts():
    step = 0.032
    probs = _probs([(1.0, 3.0), (3.2, 4.0), (6.0, 8.0), (9.0, 9.1)], 400, step)
    segments, report = speech_segments(probs, step, settings=VadSettings(min_silence=0.4))
    # The 0.2 s pause does not split; the 0.1 s burst is dropped; 50 ms padding on each side.
    bounds = [t for s in segments for t in (s.start, s.end)]
    assert bounds == pytest.approx([0.95, 4.05, 5.95, 8.05], abs=step)
    assert (report.found, report.skipped_short, report.segments) == (3, 1, 2)


def test_speech_segments_cap_the_length_at_the_least_speech_like_window():
    step = 0.032
    probs = _probs([(1.0, 21.0)], 800, step)
    probs[round(8.0 / step)] = 0.3  # a dip, but too short to be a pause
    segments, report = speech_segments(probs, step, settings=VadSettings(max_segment=10))
    assert len(segments) == 3 and report.split_long == 2
    assert segments[0].end == pytest.approx(8.0, abs=step)  # cut at the dip
    assert segments[1].start == segments[0].end  # pieces of one burst touch, no padding between
    assert max(s.duration for s in segments) <= 10 + 0.05 + step


def test_speech_segments_stay_inside_the_media():
    probs = _probs([(0.0, 1.0), (2.0, 3.2)], 100)
    segments, _ = speech_segments(probs, 0.032, offset=0.0, duration=3.1)
    assert segments[0].start == 0.0 and segments[-1].end == 3.1
    with pytest.raises(ValueError, match="threshold"):
        VadSettings(threshold=1.5)


def test_a_negative_ass_time_is_refused_naming_the_cue(tmp_path):
    ass = (
        "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontsize\n"
        "Style: Default,20\n\n[Events]\n"
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
        "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,hello\n"
        "Dialogue: 0,-0:00:01.00,0:00:02.00,Default,,0,0,0,,again\n"
    )
    with pytest.raises(DataError, match="cue 2 starts at a negative time"):
        read_subtitles(_write(tmp_path, ass, "a.ass"))


@pytest.mark.parametrize(
    ("settings", "option", "words"),
    [
        ({"max_segment": 0.4}, "max_segment", CASES["vad-option-named"].message),
        ({"max_segment": float("nan")}, "max_segment", "--max-segment must be a finite number"),
        ({"min_silence": 0.0}, "min_silence", "--min-silence must be > 0 seconds, got 0.0"),
        ({"min_silence": float("inf")}, "min_silence", "--min-silence must be a finite number"),
    ],
)
def test_vad_settings_errors_name_the_option_the_cli_words_as_its_flag(settings, option, words):
    with pytest.raises(OptionError) as caught:
        VadSettings(**settings)
    assert caught.value.options[0] == option
    assert error_message(caught.value).startswith(words)


def test_batched_vad_equals_one_by_one_and_a_file_read_whole(tmp_path):
    import soundfile

    from mesm.data.media.vad import (
        VAD_RATE,
        VAD_WINDOW,
        batch_speech_probabilities,
        load_vad_model,
        speech_probabilities,
        waveform_speech_probabilities,
    )

    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * VAD_RATE)) / VAD_RATE
    voiced = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype("f4")
    waves = [voiced, rng.normal(0, 0.05, 9000).astype("f4"), np.zeros(0, "f4"), voiced[:700]]
    model = load_vad_model()
    together = batch_speech_probabilities(waves, model)
    for wave, probs in zip(waves, together, strict=True):
        assert probs.shape == (-(-len(wave) // VAD_WINDOW),)
        np.testing.assert_allclose(probs, waveform_speech_probabilities(wave, model), atol=1e-5)
    soundfile.write(tmp_path / "a.wav", voiced, VAD_RATE, subtype="FLOAT")  # no 16-bit rounding
    streamed, first, _ = speech_probabilities(tmp_path / "a.wav", model=model)
    assert first == 0.0
    np.testing.assert_allclose(streamed, together[0], atol=1e-5)
