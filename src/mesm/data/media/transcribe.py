"""Speech recognition for segments without a transcript, through `transformers`' pipeline.

Any Hugging Face speech-recognition model works (a hub name where the hub is reachable, or a
folder written by ``save_pretrained``: model, feature extractor and tokenizer/processor). Each
segment's 16 kHz mono audio is transcribed on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mesm.errors import UsageError

ASR_RATE = 16000


class Transcriber:
    """A speech-recognition pipeline: 16 kHz mono samples → text.

    Args:
        model: a model name or a local folder.
        device: where it runs ("cpu", "cuda", "cuda:1").

    Raises:
        UsageError: the model cannot be loaded (names it and says why).
    """

    def __init__(self, model: str, device: str = "cpu") -> None:
        self.model = model
        source = local_model(model)  # before importing transformers: a missing model fails fast
        from transformers import pipeline

        try:
            self._pipe = pipeline("automatic-speech-recognition", model=source, device=device)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(
                f"cannot load the speech-recognition model {model!r}: {first}"
            ) from None

    def __call__(self, waveform: np.ndarray) -> str:
        """Transcribe (N,) float32 samples at 16 kHz; returns the text, whitespace-normalised."""
        if waveform.size == 0:
            return ""
        out = self._pipe({"raw": np.asarray(waveform, dtype=np.float32), "sampling_rate": ASR_RATE})
        return " ".join(str(out.get("text", "")).split())


def local_model(model: str) -> str:
    """Where to load `model` from without waiting on a network that is not there: a folder as
    is; a Hub name found in the local Hugging Face cache as its cached snapshot folder (no
    network at all); any other name only after one quick look at the Hub (an offline machine
    fails here, in one line, instead of after huggingface_hub's retries, ~30 s).

    Raises:
        UsageError: the name is not cached and the Hub cannot be reached (or HF_HUB_OFFLINE).
    """
    from huggingface_hub import model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    if Path(model).is_dir():
        return model
    try:
        cached = try_to_load_from_cache(model, "config.json")
    except HFValidationError:  # not a Hub name either: a folder that is not there
        raise UsageError(f"no speech-recognition model folder at {model}") from None
    if isinstance(cached, str):
        return str(Path(cached).parent)
    not_cached = f"the speech-recognition model {model!r} is not in the local Hugging Face cache"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise UsageError(f"{not_cached}, and HF_HUB_OFFLINE is set")
    try:
        model_info(model, timeout=10)
    except Exception as err:  # offline, unknown name, no access: one line says which
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"{not_cached}, and the Hub cannot give it: {type(err).__name__}: {first}"
        ) from None
    return model
