"""Library errors carry the inputs at fault as data; each face words them in its own terms."""

from __future__ import annotations

import pytest

from mesm.cli import error_message
from mesm.errors import OptionError, UsageError
from mesm.inference.predict import read_transcript
from mesm.inference.video import check_video_options


def test_an_option_error_names_its_inputs_by_parameter_and_the_cli_by_flag():
    with pytest.raises(OptionError) as caught:
        check_video_options("talk.srt", "whisper-tiny")
    err = caught.value
    assert isinstance(err, UsageError) and err.options == ("subtitles", "transcribe")
    assert str(err) == "give subtitles or transcribe, not both (subtitles carry the text)"
    assert error_message(err) == (
        "give --subtitles or --transcribe, not both (subtitles carry the text)"
    )
    assert err.words(lambda o: f"the {o} field") == (
        "give the subtitles field or the transcribe field, not both (subtitles carry the text)"
    )


def test_subtitles_for_several_videos_carry_the_count():
    with pytest.raises(OptionError) as caught:
        check_video_options("talk.srt", None, videos=3)
    assert caught.value.values == {"count": 3}
    assert error_message(caught.value) == "--subtitles belongs to one video, got 3 inputs"


def test_a_path_like_transcript_is_worded_with_the_flags_only_by_the_cli():
    with pytest.raises(OptionError) as caught:
        read_transcript("notes/t.txt")
    assert caught.value.values == {"value": "notes/t.txt"}
    assert "--" not in str(caught.value)
    assert error_message(caught.value) == (
        "--transcript 'notes/t.txt' looks like a file path but no such file exists (use --text "
        "for the words themselves, --transcript-file for a file)"
    )
