"""The demo's two-person video: both faces found side by side, the right one distinct and
smaller, the cues and the speaker's face as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mesm.data.media.audio import resample
from mesm.data.media.faces import FaceCropper
from mesm.data.media.segments import read_subtitles
from mesm.data.media.speaker import choose_speaker
from mesm.data.media.stream import iter_segment_media
from mesm.data.media.video import video_duration
from mesm.demo.corpus import person_at, write_two_person_video
from mesm.demo.two_person import demo_turns

pytestmark = pytest.mark.usefixtures("one_thread")


def test_turns_alternate_and_differ_from_the_listeners_last_emotion():
    turns = demo_turns(12, seed=0)
    assert [s for s, _ in turns] == [1, 0] * 6  # the smaller face speaks first
    last = {0: "neutral", 1: "neutral"}
    for speaker, emotion in turns:
        assert emotion != last[1 - speaker]
        last[speaker] = emotion


def test_two_faces_are_found_and_the_speakers_is_chosen(tmp_path):
    turns = [(1, "anger"), (0, "sadness"), (1, "happiness"), (0, "neutral")]
    video, srt, truth = write_two_person_video(tmp_path / "two.mp4", turns, seed=2)
    assert [(t["speaker"], t["emotion"]) for t in truth] == turns
    segments, _ = read_subtitles(srt, duration=video_duration(video), min_duration=0.5)
    assert [s.text for s in segments] == ["[right]", "[left]", "[right]", "[left]"]
    cropper, right = FaceCropper(), 0
    for media, turn in zip(iter_segment_media(video, segments), truth, strict=True):
        crops = cropper(media.frames.images)
        detections, frames = crops.detections.numpy(), crops.detection_frames.numpy()
        # Both faces in every frame, the left (the demo's face) larger: listed first.
        assert np.bincount(frames).tolist() == [2] * len(media.frames.images)
        firsts = detections[np.r_[True, frames[1:] != frames[:-1]]]
        assert all(person_at((d[0] + d[2]) / 2) == 0 for d in firsts)
        wave = resample(torch.from_numpy(media.waveform), media.sample_rate, 16000).numpy()
        choice = choose_speaker(media.frames.images, media.frames.timestamps, crops, wave, 16000)
        mine = detections[choice.tracks == choice.track]
        person = person_at(float((mine[:, 0] + mine[:, 2]).mean() / 2))
        right += not choice.fallback and person == turn["speaker"]
    assert right >= 3  # the demo reports the rate over its whole video
