"""EmoEmbs: modality-transferable emotion embeddings (Dai et al. 2020, "Modality-Transferable
Emotion Embeddings for Low-Resource Multimodal Emotion Recognition", AACL-IJCNLP).

Each emotion k is represented by the word embedding e_k of its name; each modality m encodes its
feature sequence (a (bi)LSTM here), projects the summary into the word-embedding space and scores
it against every emotion: s_{m,k} = <W_m r_m, e_k / |e_k|>. The per-modality scores are fused by
a learned weighted sum (as FE2E fuses its heads). Because the classifier is the fixed set of
emotion embeddings, an emotion unseen in training can still be scored from its name, the paper's
zero-shot setting.

The emotion embeddings come from the input embedding table of the text model (the offline
MiniLM-L6 by default; the paper used GloVe), averaging the sub-word vectors of each name; the
abbreviations of IEMOCAP ("ang", "hap", ...) are spelt out first (`EMOTION_WORDS`). They are a
fixed buffer, saved with the weights. Without label names (config checks before a dataset is
known) they are random.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mesm.models.baselines.base import BaselineModel
from mesm.models.baselines.blocks import LSTMEncoder
from mesm.models.baselines.config import BaselineConfig
from mesm.resources import default_text_model, quiet_transformers

# Dataset label abbreviations → the words whose embeddings represent them.
EMOTION_WORDS = {
    "ang": "anger",
    "exc": "excitement",
    "fru": "frustration",
    "hap": "happiness",
    "neu": "neutral",
    "sad": "sadness",
    "sur": "surprise",
    "fea": "fear",
    "dis": "disgust",
}


def emotion_word_embeddings(
    label_names: tuple[str, ...],
    text_model: str | None = None,
    pretrained: bool = True,
    overrides: dict[str, Any] | None = None,
) -> Tensor:
    """(K, d_w) embeddings of the emotion names from a text model's input embedding table.

    Args:
        label_names: K emotion names (abbreviations are spelt out by `EMOTION_WORDS`).
        text_model: Hugging Face model name or folder (None: the offline default).
        pretrained: use the trained table (False: a random one of the same shape, for tests).
        overrides: config fields overriding the text model's.

    Returns:
        (K, d_w) float32, each row the mean of the name's sub-word vectors.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = text_model or default_text_model()
    config = AutoConfig.from_pretrained(path, **(overrides or {}))
    if pretrained:
        with quiet_transformers():
            model = AutoModel.from_pretrained(path, config=config)
        table = model.get_input_embeddings().weight
    else:
        table = torch.randn(config.vocab_size, config.hidden_size) * 0.02
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = []
    for name in label_names:
        word = EMOTION_WORDS.get(name.lower(), name.lower().replace("_", " "))
        ids = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
        rows.append(table.detach()[torch.tensor(ids)].float().mean(0))
    return torch.stack(rows)


class EmoEmbs(BaselineModel):
    """Per-modality (bi)LSTM, projection into the word space, scores against emotion embeddings.

    Args:
        config: a :class:`BaselineConfig` with arch "emoembs".

    Attributes:
        emotion_embeddings: (K, d_w) buffer, the emotion names' word vectors.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        c = config
        if c.label_names:
            table = emotion_word_embeddings(
                c.label_names, c.text_model, c.text_pretrained, c.text_overrides
            )
        else:
            from transformers import AutoConfig

            width = AutoConfig.from_pretrained(
                c.text_model or default_text_model(), **c.text_overrides
            ).hidden_size
            table = torch.randn(c.num_classes, width)
        self.register_buffer("emotion_embeddings", table.float())
        self.encoders = nn.ModuleDict(
            {
                m: LSTMEncoder(d, c.hidden_dim, c.num_layers, c.bidirectional, c.dropout)
                for m, d in c.feature_dims.items()
            }
        )
        self.projections = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Dropout(c.dropout), nn.Linear(enc.out_features, table.shape[1]))
                for m, enc in self.encoders.items()
            }
        )
        num = len(self.modalities)
        self.fusion = nn.Linear(num, 1, bias=False)
        nn.init.constant_(self.fusion.weight, 1.0 / num)

    def forward_features(self, **inputs: Tensor | None) -> dict[str, Tensor]:
        """Per-modality representations in the word space {"t"|"a"|"v": (B, d_w)}.

        Args:
            **inputs: ``{text,audio,visual}_feats`` (B, T, D) and ``..._mask`` (B, T) bool.
        """
        seqs = self.gather(**inputs)
        return {m: self.projections[m](self.encoders[m](*seqs[m])) for m in self.modalities}

    def forward_modalities(self, **inputs: Tensor | None) -> dict[str, Tensor]:
        """Per-modality emotion scores {"t"|"a"|"v": (B, K)}."""
        emotions = F.normalize(self.emotion_embeddings, dim=-1)
        return {m: f @ emotions.t() for m, f in self.forward_features(**inputs).items()}

    def forward(self, **inputs: Tensor | None) -> Tensor:
        """Fused logits (B, K) from padded feature sequences (keys as in `forward_features`)."""
        scores = self.forward_modalities(**inputs)
        stacked = torch.stack([scores[m] for m in self.modalities], dim=-1)  # (B, K, M)
        return self.fusion(stacked).squeeze(-1)
