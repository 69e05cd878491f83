"""Data pipeline: dataset folders, media decoding, face crops, mel chunks, cache, batches.

Flow: ``prepare_*`` (release → dataset folder) → `preprocess_dataset` (→ feature cache) →
`EmotionDataset` + `collate` (→ `Batch`). Imports nothing of mesm but `mesm.resources`.
"""

from mesm.data.cache import FeatureCache, PreprocessSettings
from mesm.data.dataset import Batch, EmotionDataset, Item, collate
from mesm.data.errors import DataError, ManifestError, PreprocessError
from mesm.data.faces import FACE_MEAN, FACE_STD, FaceCropper, normalize_faces
from mesm.data.manifest import DatasetInfo, Record, apply_split_lists, read_dataset, write_dataset
from mesm.data.prepare import prepare_iemocap, prepare_mosei, prepare_released
from mesm.data.preprocess import PreprocessReport, preprocess_dataset
from mesm.data.text import TextTokenizer

__all__ = [
    "FACE_MEAN",
    "FACE_STD",
    "Batch",
    "DataError",
    "DatasetInfo",
    "EmotionDataset",
    "FaceCropper",
    "FeatureCache",
    "Item",
    "ManifestError",
    "PreprocessError",
    "PreprocessReport",
    "PreprocessSettings",
    "Record",
    "TextTokenizer",
    "apply_split_lists",
    "collate",
    "normalize_faces",
    "prepare_iemocap",
    "prepare_mosei",
    "prepare_released",
    "preprocess_dataset",
    "read_dataset",
    "write_dataset",
]
