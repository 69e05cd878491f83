"""Active-speaker selection (`mesm.data.media.speaker`) on drawn two-face frames through the real
MTCNN cascade, and `face="speaker"` in the feature cache (a one-face clip: the crops of today)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mesm.data.media.cache import FeatureCache, PreprocessSettings
from mesm.data.media.faces import FaceCropper
from mesm.data.media.preprocess import preprocess_dataset
from mesm.data.media.speaker import choose_speaker, speaker_crops
from mesm.demo.synthetic import speech_like, two_face_frames, write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")
TIMES = np.arange(8) * 0.5  # eight frames, one every 500 ms (the paper's sampling)


@pytest.fixture(scope="module")
def cropper() -> FaceCropper:
    return FaceCropper()


def _scene(talking: int, seed: int = 3):
    images = list(two_face_frames(len(TIMES), talking=talking, sizes=(128, 96), seed=seed))
    return images


@pytest.mark.parametrize("talking", [1, 0])
def test_the_face_whose_mouth_moves_with_the_speech_is_chosen(cropper, talking):
    images = _scene(talking)
    crops = cropper(images)
    # Both faces are found in every frame; the larger (left) one first.
    assert np.bincount(crops.detection_frames.numpy()).tolist() == [2] * len(TIMES)
    choice = choose_speaker(images, TIMES, crops, speech_like(4.0), 16000)
    talker = int(choice.tracks[talking])  # frame 0: row 0 is the left face, row 1 the right
    assert choice.fallback == "" and choice.track == talker
    assert choice.candidates == 2 and choice.found == len(TIMES)
    assert choice.scores[talker] > 2 * max(s for t, s in choice.scores.items() if t != talker)
    chosen = speaker_crops(images, crops, choice, cropper)
    rows = crops.detections.numpy()[choice.tracks == talker]
    np.testing.assert_array_equal(chosen.boxes.numpy(), rows[:, :4])
    assert bool(chosen.found.all())
    if talking == 1:  # the smaller face: its crops replace the largest face's
        want = cropper.crop_face(torch.from_numpy(images[0]), rows[0, :4], rows[0, 5:])
        assert torch.equal(chosen.faces[0], want[0])
        assert not torch.equal(chosen.faces[0], crops.faces[0])
    else:  # the larger face: the crops are the largest face's, unchanged
        assert torch.equal(chosen.faces, crops.faces)


def test_silence_falls_back_to_the_largest_face(cropper):
    images = _scene(talking=1)
    crops = cropper(images)
    quiet = 0.002 * np.random.default_rng(0).standard_normal(64000).astype(np.float32)
    choice = choose_speaker(images, TIMES, crops, quiet, 16000)
    assert choice.fallback == "no speech" and choice.counted_fallback
    assert choice.track == int(choice.tracks[0])  # the largest face's track
    assert speaker_crops(images, crops, choice, cropper) is crops


def test_two_silent_faces_are_not_separated(cropper):
    images = [two_face_frames(1, talking=-1, seed=3)[0]] * len(TIMES)  # nobody moves
    crops = cropper(images)
    choice = choose_speaker(images, TIMES, crops, speech_like(4.0), 16000)
    assert choice.fallback == "not separated" and choice.counted_fallback


def test_the_speakers_face_is_held_where_it_is_missed(cropper):
    images = _scene(talking=1)
    images[3] = images[3].copy()
    images[3][:, 128:] = (70, 90, 120)  # the speaker (right) leaves frame 3 for a moment
    crops = cropper(images)
    choice = choose_speaker(images, TIMES, crops, speech_like(4.0), 16000)
    assert choice.fallback == "" and choice.found == len(TIMES) - 1
    chosen = speaker_crops(images, crops, choice, cropper)
    assert not bool(chosen.found[3]) and bool(torch.isnan(chosen.boxes[3]).all())
    # Held from a neighbouring frame's box, never the other (largest) face's crop.
    assert not torch.equal(chosen.faces[3], crops.faces[3])


def test_one_face_clips_give_the_crops_of_today(tmp_path):
    """face="largest" keeps the cache folder and entry tensors it had before the choice;
    face="speaker" on one-face clips gives the same crops (so the same predictions)."""
    root = tmp_path / "ds"
    write_synthetic_dataset(root, 2, fps=10, duration=(1.5, 2.0), seed=5)
    largest, speaker = PreprocessSettings(), PreprocessSettings(face="speaker")
    assert largest.key() == "633d5a4296f8"  # the folder name before issue 23
    assert speaker.key() != largest.key()
    assert "face" not in largest.cache_dict()
    preprocess_dataset(root, largest, progress=False)
    report = preprocess_dataset(root, speaker, progress=False)
    assert report.face == "speaker" and report.speaker_fallbacks == {}
    a, b = FeatureCache(root, largest), FeatureCache(root, speaker)
    for uid in ("utt0000", "utt0001"):
        old, new = a.load(uid), b.load(uid)
        assert set(old) == set(FeatureCache.entry_keys)
        assert set(new) - set(old) == {"detection_tracks", "speaker_track", "speaker_fallback"}
        for key in old:
            assert torch.equal(old[key], new[key]), key
        assert int(new["speaker_fallback"][0]) == 1  # "one face": nothing to choose
        assert b.metadata(uid)["speaker"] == "one face"
        assert "speaker" not in a.metadata(uid)


def test_preprocess_crops_the_speakers_face_and_counts_the_choices(tmp_path):
    from mesm.data.manifest import DatasetInfo, Record, write_dataset
    from mesm.demo.synthetic import write_video

    root = tmp_path / "ds"
    (root / "clips").mkdir(parents=True)
    records = []
    for i, talking in enumerate((1, 0)):  # the smaller (right) face talks, then the larger
        frames = two_face_frames(40, talking=talking, seed=i)
        write_video(root / "clips" / f"c{i}.mp4", frames, 10, speech_like(4.0, seed=i))
        records.append(Record(id=f"c{i}", video=f"clips/c{i}.mp4", text="hi", labels=("x",)))
    write_dataset(root, DatasetInfo("two", "single_label", ("x", "y")), records)
    report = preprocess_dataset(root, PreprocessSettings(face="speaker"), progress=False)
    assert (report.speaker_chosen, report.speaker_fallbacks) == (2, {})
    assert "speaker's face chosen in 2 utterance(s) with several faces" in report.summary()
    cache = FeatureCache(root, PreprocessSettings(face="speaker"))
    for uid, talking in (("c0", 1), ("c1", 0)):
        entry = cache.load(uid)
        centres = (entry["boxes"][:, 0] + entry["boxes"][:, 2]) / 2
        assert bool(((centres > 128) == bool(talking)).all()), uid  # the talker's side
        assert int(entry["speaker_fallback"][0]) == 0 and cache.metadata(uid)["speaker"] == "chosen"
