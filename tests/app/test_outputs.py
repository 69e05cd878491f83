"""The page's pure functions on literal values: probability bars, FLOPs line, messages."""

from __future__ import annotations

import re

import pytest

from mesm.app.outputs import (
    check_request,
    flops_markdown,
    probability_html,
    user_message,
)
from mesm.data.errors import DataError
from mesm.errors import PageError

EMOTIONS = {
    "anger": {"probability": 0.7312, "threshold": 0.5, "present": True},
    "happiness": {"probability": 0.12, "threshold": 0.35, "present": False},
    "<neutral>": {"probability": 0.0, "threshold": 1.0, "present": False},
}


def _rows(page: str) -> list[dict[str, str]]:
    return [
        dict(re.findall(r'data-(\w+)="([^"]*)"', row))
        for row in re.findall(r'<div class="mesm-emotion"[^>]*>', page)
    ]


def test_every_emotion_has_a_bar_with_its_probability_threshold_and_decision():
    page = probability_html(EMOTIONS)
    rows = _rows(page)
    assert [r["emotion"] for r in rows] == ["anger", "happiness", "&lt;neutral&gt;"]
    assert [float(r["probability"]) for r in rows] == [0.7312, 0.12, 0.0]
    assert [float(r["threshold"]) for r in rows] == [0.5, 0.35, 1.0]
    assert [r["present"] for r in rows] == ["true", "false", "false"]
    # Bar widths and threshold ticks sit at the values, in percent of the track.
    assert re.findall(r"width:([\d.]+)%", page) == ["73.1", "12.0", "0.0"]
    assert re.findall(r"left:([\d.]+)%", page) == ["50.0", "35.0", "100.0"]
    assert "0.731 (threshold 0.50): present" in page
    assert "0.120 (threshold 0.35): not present" in page
    assert "<neutral>" not in page  # names are escaped


def test_flops_line_gives_both_models_the_ratio_and_the_kept_sites():
    mesm = {
        "p": 0.7,
        "gflops_per_utterance": {"features": 0.03, "attention": 0.002},
        "sites_kept": {"visual.stages.0": 0.5, "audio.stages.0": 0.25},
    }
    fe2e = {"p": None, "gflops_per_utterance": {"features": 0.04, "attention": 0.0}}
    line = flops_markdown(mesm, fe2e)
    assert "p = 0.7" in line and "MESM 0.0300 GFLOPs (+ 0.0020" in line
    assert "FE2E 0.0400 GFLOPs" in line and "**0.75x**" in line
    assert "visual.stages.0 50%, audio.stages.0 25%" in line


@pytest.mark.parametrize(
    ("video", "transcript", "subtitles", "expected"),
    [
        (None, "hello", None, "No video"),
        ("clip.mp4", "", None, "The transcript is empty"),
        ("clip.mp4", "  \n ", None, "The transcript is empty"),
    ],
)
def test_requests_without_what_they_need_are_refused(video, transcript, subtitles, expected):
    with pytest.raises(PageError, match=expected):
        check_request(video, transcript, subtitles)


def test_a_subtitle_file_replaces_the_transcript():
    check_request("talk.mp4", "", "talk.srt")  # no error: the cues carry the text
    check_request("clip.mp4", "words", None)


def test_messages_name_the_users_file_and_say_what_is_wrong():
    names = {"/tmp/gradio/abc123/holiday.mp4": "holiday.mp4"}
    silent = DataError(
        "record 'holiday': /tmp/gradio/abc123/holiday.mp4: has no audio track (give the record "
        "an 'audio' file in the manifest)"
    )
    corrupt = DataError("/tmp/gradio/abc123/holiday.mp4: cannot open video (Invalid data)")
    assert user_message(silent, names) == (
        "holiday.mp4 has no audio track: mesm needs the speech as well as the face. Upload a "
        "video with sound."
    )
    assert user_message(corrupt, names).startswith("holiday.mp4 could not be read as a video")
    other = ValueError("/tmp/gradio/abc123/holiday.mp4: 3 frames but no mel chunks")
    assert user_message(other, names) == "holiday.mp4: 3 frames but no mel chunks"


def test_a_bug_shows_its_type_not_its_details():
    message = user_message(KeyError("secret internals"), {})
    assert message == "Internal error (KeyError); the server log has the details."
