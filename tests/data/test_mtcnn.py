"""Our MTCNN cascade equals facenet-pytorch's, bit for bit, without importing torchvision."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from mesm.data.media.mtcnn import MTCNN, batched_nms, nms


def _photo() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()  # (512, 512, 3): one real face


def _frame_sets() -> dict[str, np.ndarray]:
    from mesm.demo.corpus import _face

    rng = np.random.default_rng(0)
    photo = _photo()
    four = np.concatenate([np.concatenate([photo, photo[:, ::-1]], 1)] * 2, 0)[::2, ::2]
    return {
        "demo faces": _face(1.0, 4, rng),
        "demo faces, larger": _face(-1.0, 3, rng, size=160),
        "photo and its mirror": np.stack([photo, photo[:, ::-1]]),
        "four faces in one frame": four[None],
        "noise (no face)": rng.integers(0, 256, (2, 120, 160, 3), dtype=np.uint8),
    }


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", list(_frame_sets()))
def test_boxes_scores_and_landmarks_equal_facenet_pytorch(name):
    from facenet_pytorch import MTCNN as Reference

    frames = torch.from_numpy(np.ascontiguousarray(_frame_sets()[name]))
    want_boxes, want_scores, want_points = Reference(min_face_size=20).detect(
        frames, landmarks=True
    )
    got = MTCNN(min_face_size=20).detect(frames)
    assert len(got) == len(frames)
    for i, faces in enumerate(got):
        if want_boxes[i] is None:
            assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)
            continue
        # Bit for bit: same networks, same crops, same arithmetic, same order (largest first).
        np.testing.assert_array_equal(faces.boxes, want_boxes[i].astype(np.float32))
        np.testing.assert_array_equal(faces.scores, want_scores[i].astype(np.float32))
        np.testing.assert_array_equal(faces.landmarks, want_points[i].astype(np.float32))
    counts = [len(f.boxes) for f in got]
    if name == "four faces in one frame":
        assert counts == [4]
    elif name == "noise (no face)":
        assert counts == [0, 0]
    else:
        assert all(c >= 1 for c in counts), counts


def test_a_frame_too_small_for_the_pyramid_has_no_faces():
    faces = MTCNN(min_face_size=20).detect(torch.zeros(2, 15, 40, 3, dtype=torch.uint8))
    assert [f.boxes.shape for f in faces] == [(0, 4), (0, 4)]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_equals_torchvision(threshold):
    from torchvision.ops import batched_nms as tv_batched_nms
    from torchvision.ops import nms as tv_nms

    g = torch.Generator().manual_seed(int(threshold * 10))
    corner = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat([corner, corner + 5 + torch.rand(300, 2, generator=g) * 60], dim=1)
    scores = torch.rand(300, generator=g)
    owner = torch.randint(0, 3, (300,), generator=g)
    assert torch.equal(nms(boxes, scores, threshold), tv_nms(boxes, scores, threshold))
    want = tv_batched_nms(boxes, scores, owner, threshold)
    assert torch.equal(batched_nms(boxes, scores, owner, threshold), want)
    assert len(want) < 300  # suppression is in play


def test_detecting_imports_neither_torchvision_nor_facenet_and_keeps_the_random_stream():
    code = """
import sys
import numpy as np
import torch
from mesm.data.media.faces import FaceCropper
torch.manual_seed(0)
expected = torch.rand(3)
torch.manual_seed(0)
crops = FaceCropper()([np.zeros((64, 80, 3), dtype=np.uint8)])
assert torch.equal(torch.rand(3), expected), "the detector moved the random stream"
heavy = [m for m in ("torchvision", "facenet_pytorch") if m in sys.modules]
assert not heavy, heavy
print(crops.faces.shape)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "torch.Size([1, 3, 48, 48])"
