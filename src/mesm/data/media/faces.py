"""Face crops: MTCNN (`mesm.data.media.mtcnn`, on facenet-pytorch's weights) as the paper,
48×48 with margin 2, stored as uint8.

Detection runs once, in preprocessing, batched over the frames of an utterance (frames of one
size per batch), on the CPU unless told otherwise. The largest detected face of a frame is kept.
A frame without a detected face gets a *centre crop*: the central square whose side is half the
frame's shorter side, resized to 48×48 — where a talking head usually is. (The paper's code takes
a raw 48-pixel centre patch, a sliver of a full-resolution frame.) Fallbacks are flagged per
frame (`FaceCrops.found`) and counted per utterance by the cache, never silent.

The crops stay uint8 here; `normalize_faces` applies the paper's normalisation (mean 159/111/102,
std 37/33/32 per RGB channel on 0..255 values) when batches are built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from mesm.data.media.cache import PreprocessSettings

FACE_MEAN = (159.0, 111.0, 102.0)
FACE_STD = (37.0, 33.0, 32.0)


@dataclass
class FaceCrops:
    """Face crops of T frames.

    Attributes:
        faces: (T, 3, size, size) uint8 RGB.
        found: (T,) bool, False where the centre-crop fallback was used.
        boxes: (T, 4) float32 detected boxes (x1, y1, x2, y2) in frame pixels; NaN where none.
        landmarks: (T, 5, 2) float32 (x, y) of the cropped face's eyes, nose and mouth corners
            (MTCNN's order: left eye, right eye, nose, left and right mouth corner, as seen) in
            crop pixels (0 .. size); NaN where no face was found.
        detections: (D, 15) float32, every face MTCNN found in every frame (largest first within
            a frame): box (4), score (1), landmarks (10: x, y of the five points) in frame
            pixels.
        detection_frames: (D,) int64, the frame of each detection.
    """

    faces: torch.Tensor
    found: torch.Tensor
    boxes: torch.Tensor
    landmarks: torch.Tensor
    detections: torch.Tensor
    detection_frames: torch.Tensor


class FaceCropper:
    """MTCNN face detector (`mesm.data.media.mtcnn`; weights from the facenet-pytorch wheel)
    + cropper.

    Args:
        image_size: side of the square crops (the paper: 48).
        margin: margin around the box, in pixels of the final crop (facenet-pytorch's meaning;
            the paper: 2).
        device: where MTCNN runs ("cpu" by default: preprocessing is a one-off).
        batch_size: frames per MTCNN call (bounds memory on long utterances).
        min_face_size: smallest face MTCNN looks for, in pixels.
    """

    def __init__(
        self,
        *,
        image_size: int = 48,
        margin: int = 2,
        device: str = "cpu",
        batch_size: int = 32,
        min_face_size: int = 20,
    ) -> None:
        from mesm.data.media.mtcnn import MTCNN

        self.image_size = image_size
        self.margin = margin
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.min_face_size = min_face_size
        self._mtcnn = MTCNN(min_face_size=min_face_size, device=self.device)

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> FaceCrops:
        """Crop the largest face of each frame (centre crop where none is found).

        Args:
            images: T frames (H, W, 3) uint8 RGB.

        Returns:
            The T crops, found flags and boxes.
        """
        count, size = len(images), self.image_size
        faces = torch.zeros(count, 3, size, size, dtype=torch.uint8)
        found = torch.zeros(count, dtype=torch.bool)
        boxes = torch.full((count, 4), float("nan"), dtype=torch.float32)
        landmarks = torch.full((count, 5, 2), float("nan"), dtype=torch.float32)
        rows: list[np.ndarray] = []
        owners: list[int] = []
        for group in _same_size_batches(images, self.batch_size):
            frames = torch.from_numpy(np.stack([images[i] for i in group]))  # (n, H, W, 3)
            if min(frames.shape[1:3]) < self.min_face_size:
                detected = [None] * len(group)  # MTCNN cannot look at frames this small
            else:
                detected = self._mtcnn.detect(frames)
            for j, i in enumerate(group):
                seen = detected[j]
                if seen is not None and len(seen.boxes):
                    rows.append(
                        np.concatenate(
                            [seen.boxes, seen.scores[:, None], seen.landmarks.reshape(-1, 10)],
                            axis=1,
                        )
                    )
                    owners += [i] * len(seen.boxes)
                box = None if seen is None or not len(seen.boxes) else seen.boxes[0]
                crop = None if box is None else self.crop_face(frames[j], box, seen.landmarks[0])
                if crop is None:
                    faces[i] = centre_crop(frames[j], size)
                    continue
                faces[i], landmarks[i] = crop
                found[i] = True
                boxes[i] = torch.from_numpy(np.asarray(box, dtype=np.float32))
        order = np.argsort(np.asarray(owners, dtype=np.int64), kind="stable")
        detections = np.concatenate(rows)[order] if rows else np.zeros((0, 15), np.float32)
        return FaceCrops(
            faces=faces,
            found=found,
            boxes=boxes,
            landmarks=landmarks,
            detections=torch.from_numpy(np.ascontiguousarray(detections, dtype=np.float32)),
            detection_frames=torch.as_tensor(np.asarray(owners, dtype=np.int64)[order]),
        )

    def crop_face(
        self, frame: torch.Tensor, box: np.ndarray, points: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One detected face's crop and its landmarks in crop pixels.

        Args:
            frame: (H, W, 3) uint8.
            box: (4,) x1, y1, x2, y2 in frame pixels.
            points: (5, 2) the face's landmarks in frame pixels.

        Returns:
            (crop (3, size, size) uint8, landmarks (5, 2) float32), or None where the box gives
            no window (see `_window`).
        """
        window = self._window(frame, box)
        if window is None:
            return None
        x1, y1, x2, y2 = window
        size = self.image_size
        scale = np.array([size / (x2 - x1), size / (y2 - y1)])
        moved = (np.asarray(points, dtype=np.float64).reshape(5, 2) - (x1, y1)) * scale
        crop = _resize(frame[y1:y2, x1:x2], size)
        return crop, torch.from_numpy(moved.astype(np.float32))

    def _window(self, frame: torch.Tensor, box: np.ndarray) -> tuple[int, int, int, int] | None:
        """The crop window (x1, y1, x2, y2 whole pixels): the box widened by the margin (as
        facenet-pytorch's `extract_face`) and clipped to the frame; None for a window under 2
        pixels (a box on the frame's edge: the fallback is safer than a 1-pixel crop)."""
        box = np.asarray(box, dtype=np.float64)
        height, width = frame.shape[:2]
        size = self.image_size
        pad_x = self.margin * (box[2] - box[0]) / (size - self.margin)
        pad_y = self.margin * (box[3] - box[1]) / (size - self.margin)
        x1, y1 = int(max(box[0] - pad_x / 2, 0)), int(max(box[1] - pad_y / 2, 0))
        x2, y2 = int(min(box[2] + pad_x / 2, width)), int(min(box[3] + pad_y / 2, height))
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None
        return x1, y1, x2, y2

    def _crop_box(self, frame: torch.Tensor, box: np.ndarray) -> torch.Tensor | None:
        """The crop of `_window`, resized to size × size; None where there is no window."""
        window = self._window(frame, box)
        if window is None:
            return None
        x1, y1, x2, y2 = window
        return _resize(frame[y1:y2, x1:x2], self.image_size)


def centre_crop(frame: torch.Tensor, size: int = 48) -> torch.Tensor:
    """The central square (side = half the shorter side) resized to size × size.

    Args:
        frame: (H, W, 3) uint8.

    Returns:
        (3, size, size) uint8.
    """
    height, width = frame.shape[:2]
    side = max(1, min(height, width) // 2)
    top, left = (height - side) // 2, (width - side) // 2
    return _resize(frame[top : top + side, left : left + side], size)


def _resize(patch: torch.Tensor, size: int) -> torch.Tensor:
    """(h, w, 3) uint8 → (3, size, size) uint8 by area averaging (MTCNN's own resampling)."""
    x = patch.permute(2, 0, 1).unsqueeze(0).float()
    mode = "area" if patch.shape[0] >= size and patch.shape[1] >= size else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    out = F.interpolate(x, size=(size, size), mode=mode, **kwargs)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def normalize_faces(faces: torch.Tensor) -> torch.Tensor:
    """The paper's per-channel normalisation of uint8 RGB crops.

    Args:
        faces: (T, 3, H, W) uint8 (or float on the 0..255 scale).

    Returns:
        (T, 3, H, W) float32, (x - mean) / std with mean 159/111/102 and std 37/33/32.
    """
    mean = torch.tensor(FACE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(FACE_STD).view(1, 3, 1, 1)
    return (faces.float() - mean) / std


def _same_size_batches(images: list[np.ndarray], batch_size: int) -> list[list[int]]:
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"frame {i}: expected (H, W, 3) uint8, got {img.shape} {img.dtype}")
        by_shape.setdefault(img.shape, []).append(i)
    return [
        ids[k : k + batch_size] for ids in by_shape.values() for k in range(0, len(ids), batch_size)
    ]


def make_cropper(
    settings: PreprocessSettings, device: str = "cpu", batch_size: int = 32
) -> FaceCropper:
    """The face cropper matching `settings` (crop size, margin, smallest face)."""
    return FaceCropper(
        image_size=settings.face_size,
        margin=settings.face_margin,
        min_face_size=settings.min_face_size,
        device=device,
        batch_size=batch_size,
    )
