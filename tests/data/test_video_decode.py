"""Frame sampling by real timestamps, time spans and frame folders."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from bad_inputs import CASES
from mesm.data.errors import DataError
from mesm.data.media.video import natural_key, sample_frames, select_by_interval
from mesm.demo.synthetic import face_frames, write_video


def test_samples_every_500ms_from_real_timestamps(clip_10fps):
    frames = sample_frames(clip_10fps, interval_ms=500)
    np.testing.assert_allclose(frames.timestamps, [0.0, 0.5, 1.0, 1.5])
    assert len(frames.images) == 4 and frames.images[0].shape == (96, 96, 3)


def test_other_intervals(clip_10fps):
    frames = sample_frames(clip_10fps, interval_ms=300)
    np.testing.assert_allclose(frames.timestamps, [0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8])


@pytest.mark.parametrize("fps", [25, Fraction(30000, 1001)])
def test_frame_rate_is_read_not_assumed(tmp_path, fps):
    path = tmp_path / "v.mp4"
    write_video(path, face_frames(50, float(fps)), fps)
    frames = sample_frames(path, interval_ms=500)
    # The first frame at or after each 0.5 s target, on the file's own clock.
    expected = [np.ceil(k * 0.5 * fps - 1e-9) / fps for k in range(4)]
    np.testing.assert_allclose(frames.timestamps, [float(e) for e in expected], atol=1e-9)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    assert set(np.round(frames.timestamps, 9)) <= set(np.round(pts, 9))


def test_time_span_cuts_and_restarts_the_grid(clip_10fps):
    frames = sample_frames(clip_10fps, interval_ms=500, start=0.45, end=1.2)
    np.testing.assert_allclose(frames.timestamps, [0.5, 1.0])
    frames = sample_frames(clip_10fps, interval_ms=500, start=1.5)
    np.testing.assert_allclose(frames.timestamps, [1.5])


def test_long_video_seek_gives_same_frames_as_decoding_through(tmp_path):
    path = tmp_path / "long.mp4"
    frames = face_frames(60, 10)
    frames[:, :4, :4] = np.arange(60, dtype=np.uint8)[:, None, None, None] * 4  # frame index tag
    write_video(path, frames, 10)
    got = sample_frames(path, interval_ms=1000, start=3.2, end=5.5)  # start > 1 s: seeks
    np.testing.assert_allclose(got.timestamps, [3.2, 4.2, 5.2])
    tags = [round(float(img[:4, :4].mean()) / 4) for img in got.images]
    assert tags == [32, 42, 52]


def test_slow_video_frames_are_not_duplicated():
    times = [Fraction(i) for i in range(3)]  # 1 fps, sampled every 0.5 s
    picked = [t for t, _ in select_by_interval(((t, None) for t in times), Fraction(1, 2), None)]
    assert picked == times


def test_decoded_pixels_keep_their_colour(tmp_path, solid_frames):
    path = tmp_path / "c.mp4"
    write_video(path, solid_frames(5, 64, 128, (200, 30, 30), (30, 30, 200)), 5)
    img = sample_frames(path).images[0].astype(int)
    assert np.abs(img[:, 8:56].mean(axis=(0, 1)) - [200, 30, 30]).max() < 6
    assert np.abs(img[:, 72:120].mean(axis=(0, 1)) - [30, 30, 200]).max() < 6


def test_frame_folder_natural_order_with_fps(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):  # 4 fps; value = index so order is checkable
        Image.fromarray(np.full((16, 16, 3), i * 20, np.uint8)).save(folder / f"image_{i}.png")
    (folder / "notes.txt").write_text("ignored")
    frames = sample_frames(folder, interval_ms=500, fps=4)
    np.testing.assert_allclose(frames.timestamps, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert [int(img[0, 0, 0]) // 20 for img in frames.images] == [0, 2, 4, 6, 8, 10]


def test_frame_folder_timestamps_file_and_pattern(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for side in ("L", "R"):
        for i in range(5):
            value = i * 10 + (0 if side == "L" else 100)
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(
                folder / f"img_{side}_{i}.png"
            )
    (folder / "timestamps.txt").write_text("0.0\n0.2\n0.7\n0.9\n1.6\n")
    frames = sample_frames(folder, interval_ms=500, frame_pattern="img_R_*.png", start=0.1)
    # targets 0.1, 0.6, 1.1 (then 1.6): first frames at or after them
    np.testing.assert_allclose(frames.timestamps, [0.2, 0.7, 1.6])
    assert [int(img[0, 0, 0]) for img in frames.images] == [110, 120, 140]


def test_natural_key_orders_numbers_numerically():
    names = ["f_10.jpg", "f_2.jpg", "f_1.jpg"]
    assert sorted(names, key=natural_key) == ["f_1.jpg", "f_2.jpg", "f_10.jpg"]


def test_no_frames_in_span_is_a_clear_error(clip_10fps):
    with pytest.raises(
        DataError, match=r"clip\.mp4: no video frames in the time span \[5\.0, 6\.0\)"
    ):
        sample_frames(clip_10fps, start=5.0, end=6.0)


def test_truncated_video_is_a_clear_error(clip_10fps, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip_10fps.read_bytes()[: clip_10fps.stat().st_size // 2])
    with pytest.raises(DataError, match=r"broken\.mp4: cannot open video"):
        sample_frames(broken)


def test_garbage_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(DataError, match=r"junk\.avi"):
        sample_frames(junk)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_honoured(tmp_path, rotation):
    # A portrait picture with a red top-left quarter, stored turned (as phones store it) with a
    # display matrix telling players to turn it back: decoding gives the upright picture.
    upright = np.zeros((64, 32, 3), np.uint8)
    upright[:32, :16] = (255, 0, 0)
    stored = np.rot90(upright, -rotation // 90)
    path = tmp_path / "phone.mp4"
    write_video(path, np.stack([stored] * 10), 10, rotation=rotation)
    with av.open(str(path)) as container:
        assert next(container.decode(video=0)).rotation % 360 == rotation % 360  # it is there
    frames = sample_frames(path, interval_ms=500)
    assert frames.images[0].shape == upright.shape
    np.testing.assert_allclose(
        frames.images[0].astype(float), upright, atol=40, err_msg=CASES["video-rotated"].message
    )
