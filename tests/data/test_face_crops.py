"""MTCNN face crops on a real photograph, the counted centre-crop fallback, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import require_module
from mesm.data.media.faces import FaceCropper, centre_crop, normalize_faces

skimage_data = require_module("skimage.data", "scikit-image is not installed")


@pytest.fixture(scope="module")
def cropper() -> FaceCropper:
    return FaceCropper()


def test_finds_the_astronauts_face(cropper):
    photo = skimage_data.astronaut()  # 512×512 RGB; the face spans about x 180–270, y 60–175
    crops = cropper([photo, photo[:, ::-1].copy()])
    assert crops.found.tolist() == [True, True]
    x1, y1, x2, y2 = crops.boxes[0].tolist()
    assert 160 < x1 < x2 < 290 and 40 < y1 < y2 < 195
    assert 60 < x2 - x1 < 130 and 70 < y2 - y1 < 140
    # The mirrored photo's box is the mirror image of the first.
    mx1, _, mx2, _ = crops.boxes[1].tolist()
    assert abs((512 - mx2) - x1) < 4 and abs((512 - mx1) - x2) < 4
    # The crop shows that region: compare with PIL's resize of the box (independent resampler).
    assert crops.faces.shape == (2, 3, 48, 48) and crops.faces.dtype == torch.uint8
    region = Image.fromarray(photo).crop((int(x1), int(y1), int(x2), int(y2))).resize((48, 48))
    expected = torch.from_numpy(np.array(region)).permute(2, 0, 1).float()
    got = crops.faces[0].float()
    corr = torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1]
    assert corr > 0.9
    assert (got - expected).abs().mean() < 20


def test_no_face_falls_back_to_a_flagged_centre_crop(cropper):
    blank = np.zeros((120, 160, 3), np.uint8)
    blank[45:75, 65:95] = (0, 255, 0)  # a green square exactly in the centre 60×60 region
    crops = cropper([blank])
    assert crops.found.tolist() == [False]
    assert torch.isnan(crops.boxes[0]).all()
    torch.testing.assert_close(crops.faces[0], centre_crop(torch.from_numpy(blank)))
    # The centre square (side 60) is half green: its middle is pure green.
    assert crops.faces[0, :, 24, 24].tolist() == [0, 255, 0]


def test_mixed_frame_sizes_keep_their_order(cropper):
    photo = skimage_data.astronaut()
    small = np.zeros((64, 64, 3), np.uint8)
    tiny = np.full((8, 8, 3), 77, np.uint8)  # smaller than any face MTCNN looks for
    crops = cropper([small, photo, tiny, small])
    assert crops.found.tolist() == [False, True, False, False]
    assert (crops.faces[2] == 77).all()


def test_normalisation_uses_the_papers_mean_and_std():
    faces = torch.tensor([159, 111, 102], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    torch.testing.assert_close(normalize_faces(faces), torch.zeros(2, 3, 2, 2))
    bright = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    expected = torch.tensor([(255 - 159) / 37, (255 - 111) / 33, (255 - 102) / 32]).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize_faces(bright), expected)
