"""Speech recognition for segments without a transcript, through `transformers`' pipeline.

Any Hugging Face speech-recognition model works (a hub name where the hub is reachable, or a
folder written by ``save_pretrained``: model, feature extractor and tokenizer/processor). Each
segment's 16 kHz mono audio is transcribed on its own.
"""

from __future__ import annotations

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
        from transformers import pipeline

        self.model = model
        try:
            self._pipe = pipeline("automatic-speech-recognition", model=model, device=device)
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
