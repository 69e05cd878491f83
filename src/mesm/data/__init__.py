"""Data: dataset folders, the two feature pipelines that read them, and the preparers.

::

    prepare/       official releases → dataset folders (manifest + clips): IEMOCAP, CMU-MOSEI,
                   the authors' processed release; clip cutting shared by them
    media/         end-to-end pipeline: media → feature cache (faces, mel chunks, token ids)
                   → `EmotionDataset` + `collate` → `Batch` (FE2E, MESM)
    handcrafted/   hand-crafted pipeline: media → feature sequences → `FeatureDataset` batches
                   (the two-phase baselines), or pre-extracted features imported
    manifest       dataset folders: header, JSON Lines manifest, validation, split lists
    errors         `DataError` and friends: one message naming the file and the record
    pickles        pickles we are handed, read as plain data (and numpy arrays) only
    splits/        the paper's train/valid/test id lists

Flow: ``prepare_*`` (release → dataset folder) → `preprocess_dataset` (→ feature cache) →
`EmotionDataset` + `collate` (→ `Batch`). The jobs of prepare, preprocess and features run in
worker processes through `mesm.jobs`; synthetic media and the demo's corpus live in `mesm.demo`.
Imports nothing of mesm but `mesm.jobs` and the leaves (`mesm.errors`, `mesm.files`,
`mesm.resources`, `mesm.settings`, `mesm.digest`).
"""

from mesm.data.errors import DataError, ManifestError, PreprocessError
from mesm.data.manifest import DatasetInfo, Record, apply_split_lists, read_dataset, write_dataset
from mesm.data.media.cache import FeatureCache, PreprocessSettings
from mesm.data.media.dataset import Batch, EmotionDataset, Item, collate
from mesm.data.media.faces import FACE_MEAN, FACE_STD, FaceCropper, normalize_faces
from mesm.data.media.preprocess import PreprocessReport, preprocess_dataset
from mesm.data.media.text import TextTokenizer
from mesm.data.prepare import prepare_iemocap, prepare_mosei, prepare_released

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
