"""Cache format 2: the cropped face's landmarks (crop pixels) and every detected face per frame;
caches of format 1 are never read, named in the report, and computed again."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mesm.data.manifest import read_dataset
from mesm.data.media.cache import CACHE_VERSION, FeatureCache, PreprocessSettings
from mesm.data.media.faces import FaceCropper
from mesm.data.media.mtcnn import MTCNN
from mesm.data.media.preprocess import preprocess_dataset
from mesm.settings import settings_key


def _photo() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()  # (512, 512, 3): one real face


def _four_faces() -> np.ndarray:
    photo = _photo()
    return np.ascontiguousarray(
        np.concatenate([np.concatenate([photo, photo[:, ::-1]], 1)] * 2, 0)[::2, ::2]
    )


@pytest.mark.usefixtures("one_thread")
def test_every_detected_face_is_kept_largest_first_with_its_frame():
    frames = [_photo(), _four_faces(), np.zeros((120, 160, 3), np.uint8)]
    crops = FaceCropper()(frames)
    # The cropper detects frames of one size together (and a batch's arithmetic may differ from
    # one frame's in the last bit): compare with the same batches.
    detector = MTCNN()
    seen = detector.detect(torch.from_numpy(np.stack(frames[:2])))
    seen += detector.detect(torch.from_numpy(frames[2])[None])
    for i in range(len(frames)):
        want = seen[i]
        rows = crops.detections[crops.detection_frames == i].numpy()
        np.testing.assert_array_equal(rows[:, :4], want.boxes)
        np.testing.assert_array_equal(rows[:, 4], want.scores)
        np.testing.assert_array_equal(rows[:, 5:].reshape(-1, 5, 2), want.landmarks)
        if len(rows):  # the crop is of the first (largest) detection
            np.testing.assert_array_equal(crops.boxes[i].numpy(), rows[0, :4])
    assert [int((crops.detection_frames == i).sum()) for i in range(3)] == [1, 4, 0]
    assert crops.found.tolist() == [True, True, False]
    assert torch.isnan(crops.landmarks[2]).all() and torch.isnan(crops.boxes[2]).all()


@pytest.mark.usefixtures("one_thread")
def test_landmarks_are_in_crop_pixels_and_follow_the_face():
    photo = _photo()
    crops = FaceCropper()([photo, np.ascontiguousarray(photo[:, ::-1])])
    size = 48
    points = crops.landmarks.numpy()  # (2, 5, 2)
    assert np.isfinite(points).all() and (points >= 0).all() and (points <= size).all()
    eyes, nose, mouth = points[:, 0:2], points[:, 2], points[:, 3:5]
    # Upright face: eyes above the nose above the mouth; the eyes and the mouth corners are
    # ordered left to right as seen.
    assert (eyes[:, :, 1].max(axis=1) < nose[:, 1]).all()
    assert (nose[:, 1] < mouth[:, :, 1].min(axis=1)).all()
    assert (eyes[:, 0, 0] < eyes[:, 1, 0]).all() and (mouth[:, 0, 0] < mouth[:, 1, 0]).all()
    # The mirrored photo's points are the mirror images of the photo's (left and right swap),
    # within the crop window's rounding to whole pixels and MTCNN's own asymmetry on this
    # slightly tilted head (up to 1.8 px of 48 measured; unswapped points would be ~20 px off).
    mirrored = points[1][[1, 0, 2, 4, 3]]
    mirrored[:, 0] = size - mirrored[:, 0]
    np.testing.assert_allclose(mirrored, points[0], atol=2.5)
    # Mapped back through the crop window, they are MTCNN's points in the frame.
    box = crops.boxes[0].numpy().astype(np.float64)
    pad = 2 * (box[2:] - box[:2]) / (size - 2)
    x1, y1 = (int(max(box[k] - pad[k] / 2, 0)) for k in (0, 1))
    x2, y2 = int(min(box[2] + pad[0] / 2, 512)), int(min(box[3] + pad[1] / 2, 512))
    back = points[0] / [size / (x2 - x1), size / (y2 - y1)] + [x1, y1]
    np.testing.assert_allclose(back, crops.detections[0, 5:].reshape(5, 2).numpy(), atol=1e-3)


def test_cache_entries_hold_landmarks_and_detections(synthetic_root):
    _, records = read_dataset(synthetic_root)
    cache = FeatureCache(synthetic_root)
    for record in records:
        entry = cache.load(record.id)
        frames = len(entry["timestamps"])
        found = entry["found"].bool()
        assert entry["landmarks"].shape == (frames, 5, 2)
        assert torch.isnan(entry["landmarks"][~found]).all()
        assert torch.isfinite(entry["landmarks"][found]).all()
        detections, owner = entry["detections"], entry["detection_frames"]
        assert detections.shape[1] == 15 and owner.shape == (len(detections),)
        assert owner.dtype == torch.int64 and bool((owner[1:] >= owner[:-1]).all())
        for t in torch.nonzero(found)[:, 0].tolist():
            first = detections[owner == t][0]
            torch.testing.assert_close(first[:4], entry["boxes"][t], rtol=0, atol=0)
        # Every cropped face is a detection (a detection may also sit on a fallback frame: a
        # box on the frame's edge leaves no crop window).
        assert set(torch.nonzero(found)[:, 0].tolist()) <= set(owner.tolist())


def test_a_format_1_cache_is_never_read_and_is_named(synthetic_copy):
    settings = PreprocessSettings()
    cache = FeatureCache(synthetic_copy, settings)
    # What format 1 left: its own key, the same settings, entries without landmarks.
    old = synthetic_copy / "cache" / settings_key(1, settings.cache_dict())
    shutil.copytree(cache.dir, old)
    (old / "settings.json").write_text(json.dumps({"version": 1, **settings.cache_dict()}))
    shutil.rmtree(cache.dir)
    before = sorted(p.name for p in (old / "items").iterdir())
    report = preprocess_dataset(synthetic_copy, settings, progress=False)
    assert CACHE_VERSION == 2 and old != cache.dir
    _, records = read_dataset(synthetic_copy)
    assert (report.computed, report.reused) == (len(records), 0)  # nothing read from `old`
    assert report.older_caches == [str(old)]
    assert f"{old} holds an older cache format of these settings: not read" in report.summary()
    assert sorted(p.name for p in (old / "items").iterdir()) == before  # left as it was
    assert "landmarks" in cache.load(records[0].id)
    # Another settings' folder of format 1 is not this cache's business.
    other = PreprocessSettings(n_mels=64)
    assert FeatureCache(synthetic_copy, other).older_folders() == []
