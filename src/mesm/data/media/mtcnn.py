"""MTCNN face detection (Zhang et al., 2016): the cascade facenet-pytorch runs, on its weights,
without importing torchvision.

The three networks are built here with facenet-pytorch's parameter names and load the trained
weights its wheel ships (``facenet_pytorch/data/{pnet,rnet,onet}.pt``, read as plain tensors).
The cascade is written here too, so detecting a face imports no torchvision (whose import pulls
in ``torch._dynamo``: about 1.5 s of a one-clip ``mesm predict``; see
``benchmarks/bench_cli_latency.py``). It computes what ``facenet_pytorch.MTCNN.detect`` computes:
the same boxes, scores and landmarks (tested on real faces, one image and batches), with one
documented difference — a candidate box that falls wholly outside the frame is dropped, where
facenet-pytorch would skip its crop but keep its row (shifting the rows after it).

The cascade, per batch of equally sized frames:

1. P-Net, fully convolutional, on an image pyramid (scale 12/min_face_size, then ×0.709 while the
   shorter side stays ≥ 12 px): a 12×12 window every 2 px whose face probability is ≥ 0.6 is a
   candidate; non-maximum suppression (NMS, IoU 0.5) per scale and image, then 0.7 per image;
   the window is moved by P-Net's offsets and made square.
2. R-Net on each candidate's 24×24 crop: kept when its probability exceeds 0.7; NMS 0.7; moved by
   R-Net's offsets; squared.
3. O-Net on 48×48 crops: kept above 0.7, with five landmarks (eyes, nose, mouth corners); moved by
   O-Net's offsets; NMS 0.7 on the intersection over the *smaller* box.

Crops are resampled by area averaging; pixel values are scaled to ``(x - 127.5) / 128``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mesm.errors import MissingDependencyError

THRESHOLDS = (0.6, 0.7, 0.7)  # face probability needed by P-Net, R-Net, O-Net
PYRAMID_FACTOR = 0.709  # scale between two levels of the image pyramid
_CHUNK = 512  # crops per R-Net/O-Net call (bounds memory; facenet-pytorch's batch too)


class PNet(nn.Module):
    """Proposal network: (N, 3, H, W) scaled pixels → (N, 4, H', W') window offsets and
    (N, H', W') face probability, one window (12×12, stride 2) per output position."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement network: (N, 3, 24, 24) crops → (N, 4) box offsets, (N,) face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        # The weights were trained (in Caffe) on the (W, H, C) flattening order.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output network: (N, 3, 48, 48) crops → (N, 4) box offsets, (N, 10) landmarks (five x
    then five y, as fractions of the box), (N,) face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        prob = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return self.dense6_2(x), self.dense6_3(x), prob


@dataclass(frozen=True)
class Faces:
    """The faces found in one image, largest box first.

    Attributes:
        boxes: (K, 4) float32 x1, y1, x2, y2 in image pixels.
        scores: (K,) float32 O-Net's face probability.
        landmarks: (K, 5, 2) float32 (x, y) of the eyes, the nose and the mouth corners.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray


def weights_folder() -> Path:
    """The folder of facenet-pytorch's MTCNN weights (found without importing the package)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "face detection needs MTCNN's weights from facenet-pytorch: "
            "pip install --no-deps facenet-pytorch==2.6.0"
        )
    return Path(spec.origin).parent / "data"


def _load(net: type[nn.Module], name: str, device: torch.device) -> nn.Module:
    # Built on the meta device and given the trained tensors: no random initialisation, so the
    # caller's random stream never moves.
    with torch.device("meta"):
        module = net()
    state = torch.load(weights_folder() / f"{name}.pt", map_location=device, weights_only=True)
    # Copied into contiguous parameters: the files store transposed tensors, and a transposed
    # weight takes another matrix-product path (last-bit differences from facenet-pytorch).
    module.load_state_dict({k: v.contiguous() for k, v in state.items()}, assign=True)
    return module.eval().requires_grad_(False)


class MTCNN:
    """The three-stage detector (see the module docstring).

    Args:
        min_face_size: the smallest face looked for, in pixels (sets the pyramid's first scale).
        thresholds: the face probability each stage needs.
        factor: scale between pyramid levels.
        device: where the networks run.
    """

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = THRESHOLDS,
        factor: float = PYRAMID_FACTOR,
        device: str | torch.device = "cpu",
    ) -> None:
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.factor = factor
        self.device = torch.device(device)
        self.pnet = _load(PNet, "pnet", self.device)
        self.rnet = _load(RNet, "rnet", self.device)
        self.onet = _load(ONet, "onet", self.device)

    def scales(self, height: int, width: int) -> list[float]:
        """The image pyramid's scales for a height × width frame (empty when too small)."""
        scale = 12.0 / self.min_face_size
        shorter = min(height, width) * scale
        out = []
        while shorter >= 12:
            out.append(scale)
            scale *= self.factor
            shorter *= self.factor
        return out

    @torch.no_grad()
    def detect(self, frames: Tensor) -> list[Faces]:
        """Faces in each of N frames of one size.

        Args:
            frames: (N, H, W, 3) uint8 RGB.

        Returns:
            N `Faces`, largest box first (empty arrays where none was found).
        """
        images = frames.to(self.device).permute(0, 3, 1, 2).float()
        boxes, owner = self._propose(images)
        boxes, owner = self._refine(images, boxes, owner)
        boxes, owner, points = self._output(images, boxes, owner)
        return _per_image(
            boxes.cpu().numpy(), owner.cpu().numpy(), points.cpu().numpy(), len(images)
        )

    def _propose(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1 → (M, 5) squared boxes (x1, y1, x2, y2, score) and (M,) image index."""
        height, width = images.shape[2:]
        found, owners = [], []
        for scale in self.scales(height, width):
            size = (int(height * scale + 1), int(width * scale + 1))
            offsets, prob = self.pnet(_scaled(F.interpolate(images, size=size, mode="area")))
            windows, owner = _windows(offsets, prob, scale, self.thresholds[0])
            keep = batched_nms(windows[:, :4], windows[:, 4], owner, 0.5)
            found.append(windows[keep])
            owners.append(owner[keep])
        if not found:  # a frame too small for the pyramid
            return images.new_zeros(0, 5), torch.zeros(0, dtype=torch.long, device=images.device)
        windows, owner = torch.cat(found), torch.cat(owners)
        keep = batched_nms(windows[:, :4], windows[:, 4], owner, 0.7)
        windows, owner = windows[keep], owner[keep]
        size = windows[:, 2:4] - windows[:, 0:2]  # P-Net's offsets are in window widths
        moved = windows[:, :4] + windows[:, 5:9] * size.repeat(1, 2)
        return _square(torch.cat([moved, windows[:, 4:5]], dim=1)), owner

    def _refine(self, images: Tensor, boxes: Tensor, owner: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 2: R-Net on 24×24 crops → squared boxes and image indices."""
        crops, boxes, owner = _crops(images, boxes, owner, 24)
        if len(boxes) == 0:
            return boxes, owner
        offsets, prob = _chunked(self.rnet, crops)
        passed = prob > self.thresholds[1]
        boxes = torch.cat([boxes[passed, :4], prob[passed, None]], dim=1)
        owner, offsets = owner[passed], offsets[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], owner, 0.7)
        return _square(_move(boxes[keep], offsets[keep])), owner[keep]

    def _output(
        self, images: Tensor, boxes: Tensor, owner: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 3: O-Net on 48×48 crops → boxes, image indices, (K, 5, 2) landmarks."""
        crops, boxes, owner = _crops(images, boxes, owner, 48)
        if len(boxes) == 0:
            return boxes, owner, boxes.new_zeros(0, 5, 2)
        offsets, marks, prob = _chunked(self.onet, crops)
        passed = prob > self.thresholds[2]
        boxes = torch.cat([boxes[passed, :4], prob[passed, None]], dim=1)
        owner, offsets, marks = owner[passed], offsets[passed], marks[passed]
        side_x = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        side_y = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = side_x * marks[:, :5] + boxes[:, 0:1] - 1
        ys = side_y * marks[:, 5:] + boxes[:, 1:2] - 1
        points = torch.stack([xs, ys], dim=2)
        boxes = _move(boxes, offsets)
        keep = _nms_smaller(boxes, owner, 0.7)
        return boxes[keep], owner[keep], points[keep]


# ---- the cascade's steps -------------------------------------------------------------------------


def _scaled(pixels: Tensor) -> Tensor:
    return (pixels - 127.5) * 0.0078125


def _windows(
    offsets: Tensor, prob: Tensor, scale: float, threshold: float
) -> tuple[Tensor, Tensor]:
    """P-Net's output → (M, 9) windows (x1, y1, x2, y2, score, 4 offsets) in image pixels, whose
    probability is ≥ threshold, and their (M,) image index."""
    hit = prob >= threshold
    where = hit.nonzero()  # (M, 3): image, row, column
    corner = where[:, 1:].to(offsets.dtype).flip(1)  # (x, y) on P-Net's output grid
    top_left = ((2 * corner + 1) / scale).floor()
    bottom_right = ((2 * corner + 12) / scale).floor()
    moved = offsets.permute(1, 0, 2, 3)[:, hit].permute(1, 0)
    return torch.cat([top_left, bottom_right, prob[hit][:, None], moved], dim=1), where[:, 0]


def _move(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Boxes moved by R-/O-Net's offsets, in box sides (pixel-inclusive: x2 - x1 + 1)."""
    side_x = boxes[:, 2] - boxes[:, 0] + 1
    side_y = boxes[:, 3] - boxes[:, 1] + 1
    moved = boxes.clone()
    moved[:, :4] = torch.stack(
        [
            boxes[:, 0] + offsets[:, 0] * side_x,
            boxes[:, 1] + offsets[:, 1] * side_y,
            boxes[:, 2] + offsets[:, 2] * side_x,
            boxes[:, 3] + offsets[:, 3] * side_y,
        ],
        dim=1,
    )
    return moved


def _square(boxes: Tensor) -> Tensor:
    """Each box grown to a square around its centre (side = its longer side)."""
    height = boxes[:, 3] - boxes[:, 1]
    width = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(width, height)
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crops(
    images: Tensor, boxes: Tensor, owner: Tensor, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Each box's pixels (clipped to the image; truncated to whole, 1-based pixels) resampled
    to size × size → (K, 3, size, size) scaled crops, and the boxes and owners that have one."""
    height, width = images.shape[2:]
    corners = boxes[:, :4].trunc().int().cpu().numpy()
    x1, y1 = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
    x2, y2 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
    crops, kept = [], []
    for k in range(len(corners)):
        if y2[k] > y1[k] - 1 and x2[k] > x1[k] - 1:
            pixels = images[owner[k], :, y1[k] - 1 : y2[k], x1[k] - 1 : x2[k]]
            crops.append(F.interpolate(pixels[None], size=(size, size), mode="area"))
            kept.append(k)
    if not kept:
        return images.new_zeros(0, 3, size, size), boxes[:0], owner[:0]
    index = torch.as_tensor(kept, device=boxes.device)
    return _scaled(torch.cat(crops)), boxes[index], owner[index]


def _chunked(net: nn.Module, crops: Tensor) -> tuple[Tensor, ...]:
    outs = [net(crops[i : i + _CHUNK]) for i in range(0, len(crops), _CHUNK)]
    return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))


def nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Greedy non-maximum suppression: going down the scores, a box is dropped when its
    intersection over union with a kept box exceeds `threshold` (torchvision's ``nms``).

    Args:
        boxes: (M, 4) x1, y1, x2, y2.
        scores: (M,).
        threshold: the IoU above which the lower-scoring box goes.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].cpu().numpy()
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1) * (y2 - y1)
    zero = np.zeros((), dtype=b.dtype)
    alive = np.ones(len(b), dtype=bool)
    keep = []
    for i in range(len(b)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = i + 1 + np.flatnonzero(alive[i + 1 :])
        w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / (area[i] + area[rest] - inter)
        alive[rest[iou.astype(np.float64) > threshold]] = False
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, owner: Tensor, threshold: float) -> Tensor:
    """`nms` within each image (boxes of different images never suppress each other).

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    kept = [
        members[nms(boxes[members], scores[members], threshold)]
        for members in (torch.nonzero(owner == i)[:, 0] for i in torch.unique(owner))
    ]
    kept = torch.cat(kept)
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def _nms_smaller(boxes: Tensor, owner: Tensor, threshold: float) -> Tensor:
    """The last stage's NMS per image: overlap = intersection over the smaller box's area
    (pixel-inclusive sides); a box goes when it overlaps a higher-scoring kept box by more
    than `threshold`. Indices by decreasing score."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b, score = boxes[:, :4].cpu().numpy(), boxes[:, 4].cpu().numpy()
    images = owner.cpu().numpy()
    keep = []
    for image in np.unique(images):
        members = np.flatnonzero(images == image)
        x1, y1, x2, y2 = (b[members, j] for j in range(4))
        area = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = list(np.argsort(-score[members], kind="stable"))
        while order:
            i, rest = order[0], np.asarray(order[1:], dtype=np.int64)
            keep.append(members[i])
            w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
            h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
            overlap = (w * h) / np.minimum(area[i], area[rest])
            order = [int(j) for j in rest[overlap <= threshold]]
    keep_t = torch.as_tensor(np.asarray(keep, dtype=np.int64), device=boxes.device)
    return keep_t[torch.sort(boxes[keep_t, 4], descending=True, stable=True).indices]


def _per_image(boxes: np.ndarray, owner: np.ndarray, points: np.ndarray, count: int) -> list[Faces]:
    out = []
    for image in range(count):
        mine = np.flatnonzero(owner == image)
        b = boxes[mine]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        order = mine[np.argsort(-area, kind="stable")]
        out.append(
            Faces(
                boxes=boxes[order, :4].astype(np.float32),
                scores=boxes[order, 4].astype(np.float32),
                landmarks=points[order].reshape(-1, 5, 2).astype(np.float32),
            )
        )
    return out
