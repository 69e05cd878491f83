"""Issue 24, class 5 and real signals: partial results are kept or counted, never thrown away.

A whole video whose audio track ends early fails only the segments past its end; a real
`python -m mesm predict` over several clips or a whole video, sent SIGINT or SIGTERM, stops with
one line and status 130 / 143, writes the rows that finished (atomically), counts the segments of
the video it was in, and leaves no temporary file and no process behind.
"""

from __future__ import annotations

import csv
import json
import re
import signal

import pytest

from bad_inputs import CASES
from helpers import signal_midway, temporaries
from mesm.cli import main
from mesm.demo.synthetic import face_frames, speech_like, write_video

SRT = (
    "1\n00:00:00,500 --> 00:00:02,500\nstill heard\n\n"
    "2\n00:00:03,500 --> 00:00:04,500\nafter the audio\n\n"
    "3\n00:00:05,000 --> 00:00:05,800\nstill after it\n"
)


def test_an_audio_track_that_ends_early_fails_only_the_segments_past_its_end(
    tiny_checkpoint, tmp_path, capsys
):
    # 6 s of video, 3 s of audio: the first cue is heard, the other two come after the track.
    video = write_video(tmp_path / "v.mp4", face_frames(60, 10), 10, speech_like(3.0))
    (tmp_path / "v.srt").write_text(SRT, encoding="utf-8")
    args = ["predict", str(video), "--checkpoint", str(tiny_checkpoint), "--precision", "32"]
    out = tmp_path / "out"
    assert main([*args, "--subtitles", str(tmp_path / "v.srt"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: 2 of 3 {CASES['short-audio-track'].message}, from 3.50 s on: " in err
    timeline = json.loads((out / "timeline.json").read_text())
    assert [row["text"] for row in timeline["segments"]] == ["still heard"]
    failed = timeline["failed_segments"]
    assert [(f["segment"], f["start"], f["end"]) for f in failed] == [(1, 3.5, 4.5), (2, 5.0, 5.8)]
    assert all("the audio track ends at" in f["reason"] for f in failed)
    with open(out / "timeline.csv", newline="") as fh:
        assert [row["text"] for row in csv.DictReader(fh)] == ["still heard"]


@pytest.fixture
def ten_clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(10):
        write_video(folder / f"c{i:02d}.mp4", face_frames(20, 10, seed=i), 10, speech_like(2.0))
    return folder


def _bar(unit: str) -> re.Pattern:
    return re.compile(rf"{unit}:.*?\| *([1-9]\d*)/(\d+) \[")


def _progress(unit: str):
    """A `ready` test: the tqdm bar of `unit` shows at least one finished item."""
    return lambda err: _bar(unit).search(err) is not None


def _finished_when_signalled(run, unit: str) -> int:
    """The most items the bar of `unit` showed finished when the signal was sent (>= 1)."""
    return max(int(done) for done, _ in _bar(unit).findall(run.before_signal))


@pytest.mark.parametrize(
    ("signum", "said"),
    [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "stopped by SIGTERM")],
)
def test_a_signal_in_batch_predict_keeps_the_finished_rows(
    tiny_checkpoint, ten_clips, signum, said
):
    args = ["predict", "clips", "--checkpoint", str(tiny_checkpoint), "--precision", "32"]
    args += ["--csv", "rows.csv", "--json", "rows.json"]
    run = signal_midway(args, _progress("clips"), signum, cwd=ten_clips.parent)
    assert run.returncode == 128 + signum, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    found = re.fullmatch(
        rf"mesm predict: {said}: interrupted after (\d+) of 10 clip\(s\); their (\d+) row\(s\) "
        "are written",
        last,
    )
    assert found, run.stderr
    finished, written = map(int, found.groups())
    # Every item the bar showed finished is kept (more may finish while it stops), and the
    # signal did stop the run before its end.
    assert _finished_when_signalled(run, "clips") <= finished < 10 and written == finished
    assert CASES["ctrl-c-predict"].message in last
    with open(ten_clips.parent / "rows.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip"] for r in rows] == [f"clips/c{i:02d}.mp4" for i in range(finished)]
    assert len(json.loads((ten_clips.parent / "rows.json").read_text())) == finished
    assert run.left == set() and temporaries(ten_clips.parent) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_whole_video_predict_counts_the_finished_segments(
    tiny_checkpoint, spoken_video, tmp_path, signum
):
    video, srt, spans = spoken_video
    args = ["predict", str(video), "--checkpoint", str(tiny_checkpoint), "--precision", "32"]
    args += ["--subtitles", str(srt), "--out", "out", "--csv", "rows.csv"]
    run = signal_midway(args, _progress("segments"), signum, cwd=tmp_path)
    assert run.returncode == 128 + signum, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    what = "interrupted" if signum == signal.SIGINT else "stopped by SIGTERM"
    found = re.fullmatch(
        rf"mesm predict: {what}: 0 of 1 video\(s\) finished; {re.escape(str(video))}: "
        rf"interrupted after (\d+) of {len(spans)} segment\(s\) \(this video's timeline is not "
        r"written\); their 0 row\(s\) are written",
        last,
    )
    assert found, run.stderr
    assert _finished_when_signalled(run, "segments") <= int(found.group(1)) < len(spans)
    assert not list((tmp_path / "out").glob("timeline.*"))  # no half timeline
    assert run.left == set() and temporaries(tmp_path) == []
