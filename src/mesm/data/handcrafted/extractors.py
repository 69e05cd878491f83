"""Hand-crafted, fixed feature extractors for the two-phase baselines (one utterance at a time).

Per modality (defaults in brackets; `mesm.data.handcrafted.features.FeatureSettings` holds
the settings):

=======  ================================================  ==============  ===================
name     what                                              rate            width D
=======  ================================================  ==============  ===================
audio    openSMILE low-level descriptors of the 16 kHz     100 frames/s    25 (eGeMAPSv02) or
         mono audio (as `mesm.data.media.audio` loads it)        (10 ms hop)     65 (ComParE_2016)
visual   per sampled frame [every 500 ms, as               1 / interval    5 + 10 + HOG = 915
         `mesm.data.media.video`]: face found (1), MTCNN box     (2 frames/s)    (48 px, 8 px cells,
         centre x, y and width, height over the frame                      2x2 blocks, 9 bins)
         size (4), the 5 landmarks (eyes, nose, mouth
         corners) as (x - x1) / w, (y - y1) / h inside
         the box (10), HOG of the 48x48 grey face crop
         (skimage `hog`, L2-Hys blocks); frames without
         a face: zeros but the HOG of the centre crop
text     one static vector per token: the text model's     per token       384 (MiniLM-L6) or
         input embedding table at the tokenizer's ids                      the GloVe width
         (no special tokens) [default], or GloVe vectors
         of lower-cased words (zeros when out of
         vocabulary)
=======  ================================================  ==============  ===================

HOG width: ((size // cell - block + 1) ** 2) * block ** 2 * orientations = 25 * 4 * 9 = 900.
"""

from __future__ import annotations

import os
import re

import numpy as np
import torch

from mesm.data.errors import DataError
from mesm.data.media.faces import FaceCropper, centre_crop
from mesm.errors import MissingDependencyError

OPENSMILE_SETS = {"egemaps": ("eGeMAPSv02", 25), "compare": ("ComParE_2016", 65)}
GEOMETRY_DIM = 5
LANDMARK_DIM = 10
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def hog_dim(size: int = 48, cell: int = 8, block: int = 2, orientations: int = 9) -> int:
    """Length of the HOG descriptor of a size × size image."""
    cells = size // cell
    return max(cells - block + 1, 0) ** 2 * block**2 * orientations


# ---- audio ---------------------------------------------------------------------------------


class AudioDescriptors:
    """openSMILE low-level descriptors (LLDs) per 10 ms frame.

    Args:
        feature_set: "egemaps" (eGeMAPSv02, 25 LLDs) or "compare" (ComParE_2016, 65 LLDs).
        sample_rate: of the waveforms given.
    """

    def __init__(self, feature_set: str = "egemaps", sample_rate: int = 16000) -> None:
        if feature_set not in OPENSMILE_SETS:
            raise ValueError(f"feature_set must be one of {sorted(OPENSMILE_SETS)}")
        try:
            import opensmile
        except ImportError as err:  # pragma: no cover - declared dependency of the baselines
            raise MissingDependencyError(
                "audio features need openSMILE: pip install opensmile"
            ) from err
        name, self.dim = OPENSMILE_SETS[feature_set]
        self.sample_rate = sample_rate
        self._smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, name),
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        )
        self.names: list[str] = list(self._smile.feature_names)

    def __call__(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) samples → LLDs (Ta, D) float32 and frame start times (Ta,) float64 seconds."""
        signal = waveform.detach().cpu().numpy().astype(np.float32)
        frame = self._smile.process_signal(signal, self.sample_rate)
        values = np.nan_to_num(frame.to_numpy(dtype=np.float32, copy=True), nan=0.0)
        starts = frame.index.get_level_values("start").total_seconds().to_numpy()
        return torch.from_numpy(values.reshape(-1, self.dim)), torch.tensor(
            np.asarray(starts, dtype=np.float64)
        )


# ---- visual --------------------------------------------------------------------------------


class FaceDescriptors(FaceCropper):
    """MTCNN box + landmarks + HOG of the face crop, per frame (see the module docstring).

    Args:
        image_size: side of the face crop the HOG reads (48).
        margin: MTCNN margin in crop pixels.
        min_face_size: smallest face MTCNN looks for.
        hog_cell: pixels per HOG cell side.
        hog_block: cells per HOG block side.
        hog_orientations: orientation bins.
        device: where MTCNN runs.
        batch_size: frames per MTCNN call.
    """

    def __init__(
        self,
        *,
        image_size: int = 48,
        margin: int = 2,
        min_face_size: int = 20,
        hog_cell: int = 8,
        hog_block: int = 2,
        hog_orientations: int = 9,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        super().__init__(
            image_size=image_size,
            margin=margin,
            min_face_size=min_face_size,
            device=device,
            batch_size=batch_size,
        )
        self.hog_cell, self.hog_block, self.hog_orientations = hog_cell, hog_block, hog_orientations
        self.hog_dim = hog_dim(image_size, hog_cell, hog_block, hog_orientations)
        if self.hog_dim == 0:
            raise ValueError("the HOG blocks do not fit into the face crop")
        self.dim = GEOMETRY_DIM + LANDMARK_DIM + self.hog_dim

    @torch.no_grad()
    def describe(self, images: list[np.ndarray]) -> torch.Tensor:
        """T frames (H, W, 3) uint8 → (T, 5 + 10 + HOG) float32 descriptors."""
        out = torch.zeros(len(images), self.dim)
        for start in range(0, len(images), self.batch_size):
            group = images[start : start + self.batch_size]
            for j, img in enumerate(group):
                out[start + j] = self._describe_one(img)
        return out

    def _describe_one(self, image: np.ndarray) -> torch.Tensor:
        frame = torch.from_numpy(np.ascontiguousarray(image))
        height, width = frame.shape[:2]
        box = points = None
        if min(height, width) >= self.min_face_size:
            faces = self._mtcnn.detect(frame[None])[0]
            if len(faces.boxes):
                box = np.asarray(faces.boxes[0], dtype=np.float64)
                points = np.asarray(faces.landmarks[0], dtype=np.float64)  # (5, 2) x, y
        crop = None if box is None else self._crop_box(frame, box)
        row = torch.zeros(self.dim)
        if crop is None:
            crop = centre_crop(frame, self.image_size)
        else:
            bw, bh = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
            geometry = [1.0, (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height]
            row[:GEOMETRY_DIM] = torch.tensor([*geometry, bw / width, bh / height])
            rel = (points - box[:2]) / np.array([bw, bh])
            row[GEOMETRY_DIM : GEOMETRY_DIM + LANDMARK_DIM] = torch.from_numpy(rel.reshape(-1))
        row[GEOMETRY_DIM + LANDMARK_DIM :] = torch.from_numpy(self._hog(crop))
        return row

    def _hog(self, crop: torch.Tensor) -> np.ndarray:
        from skimage.color import rgb2gray
        from skimage.feature import hog

        grey = rgb2gray(crop.permute(1, 2, 0).numpy())
        return hog(
            grey,
            orientations=self.hog_orientations,
            pixels_per_cell=(self.hog_cell, self.hog_cell),
            cells_per_block=(self.hog_block, self.hog_block),
            block_norm="L2-Hys",
            feature_vector=True,
        ).astype(np.float32)


# ---- text ----------------------------------------------------------------------------------


def glove_tokens(text: str) -> list[str]:
    """Lower-cased words (with English clitics like "n't" kept apart) and punctuation marks."""
    return _WORD_RE.findall(text.lower())


def read_glove(
    path: str | os.PathLike, vocabulary: set[str] | None = None
) -> dict[str, np.ndarray]:
    """Word vectors from a GloVe text file (``word v1 v2 ...`` per line).

    Only words in `vocabulary` are kept (None: all), so a multi-gigabyte file streams through
    without filling memory. Words containing spaces (GloVe 840B has a few) are handled by
    reading the vector from the end of the line.

    Raises:
        DataError: unreadable file, or lines of different widths.
    """
    vectors: dict[str, np.ndarray] = {}
    width = None
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not UTF-8 ({err.reason})") from None
                parts = line.rstrip("\n").rstrip().split(" ")
                if len(parts) < 2:
                    continue
                if width is None:
                    width = len(parts) - 1
                word = " ".join(parts[: len(parts) - width])
                if vocabulary is not None and word not in vocabulary:
                    continue
                try:
                    vec = np.asarray(parts[len(parts) - width :], dtype=np.float32)
                except ValueError:
                    raise DataError(f"{path}:{lineno}: not a word followed by numbers") from None
                vectors[word] = vec
    except OSError as err:
        raise DataError(f"{path}: cannot read GloVe file ({err})") from None
    if width is None:
        raise DataError(f"{path}: no word vectors in the file")
    vectors[""] = np.zeros(width, dtype=np.float32)  # the width, for out-of-vocabulary words
    return vectors


class TextVectors:
    """Static per-token word vectors for transcripts.

    Args:
        glove: a GloVe text file; None = the text model's input embedding table.
        text_model: Hugging Face model name or folder (None: the offline MiniLM-L6 default).
        max_length: most tokens per transcript.
        vocabulary_texts: with `glove`, the transcripts to be encoded (only their words are
            read from the file).
    """

    def __init__(
        self,
        glove: str | os.PathLike | None = None,
        text_model: str | None = None,
        max_length: int = 100,
        vocabulary_texts: list[str] | None = None,
    ) -> None:
        self.max_length = max_length
        if glove is not None:
            vocab = None
            if vocabulary_texts is not None:
                vocab = {w for t in vocabulary_texts for w in glove_tokens(t)}
            self._glove = read_glove(glove, vocab)
            self.dim = int(self._glove[""].shape[0])
            return
        from transformers import AutoModel, AutoTokenizer

        from mesm.resources import default_text_model, quiet_transformers

        path = text_model or default_text_model()
        self._glove = None
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        with quiet_transformers():
            model = AutoModel.from_pretrained(path, local_files_only=True)
        self._table = model.get_input_embeddings().weight.detach().float().clone()
        self.dim = int(self._table.shape[1])

    def __call__(self, text: str) -> torch.Tensor:
        """A transcript → (L, D) float32 vectors, L <= max_length."""
        if self._glove is not None:
            zero = self._glove[""]
            words = glove_tokens(text)[: self.max_length]
            rows = [self._glove.get(w, zero) for w in words]
            return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, self.dim)
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_length]
        return self._table[torch.tensor(ids, dtype=torch.long)].reshape(len(ids), self.dim)
