"""A BERT encoder in plain PyTorch, for the text encoders that are BERTs (MiniLM, the default).

It has transformers' ``BertModel`` parameters under the same names (without the pooler), so
its state dict, checkpoints and outputs are interchangeable with that class (a test checks
outputs and gradients against it). It exists for start-up time: importing transformers'
model classes pulls in its whole modelling stack (about three seconds on a 2-core CPU, more
than one clip's prediction), while this module needs torch alone. Anything it does not model
(another architecture, relative positions, a decoder, an activation other than exact GELU)
is left to transformers: :func:`bert_settings` returns None for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class BertSettings:
    """The fields of a Hugging Face BERT ``config.json`` that this encoder uses."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float
    pad_token_id: int
    initializer_range: float


# Config values under which a BERT computes what this module computes (absent = the default).
_SUPPORTED = {
    "hidden_act": ("gelu",),
    "position_embedding_type": (None, "absolute"),
    "is_decoder": (False,),
    "add_cross_attention": (False,),
    "chunk_size_feed_forward": (0,),
}


def bert_settings(config: dict[str, Any]) -> BertSettings | None:
    """The settings of a BERT config this module computes exactly; None for anything else.

    Args:
        config: a ``config.json`` as a dict, overrides applied.
    """
    if config.get("model_type") != "bert":
        return None
    if any(key in config and config[key] not in ok for key, ok in _SUPPORTED.items()):
        return None
    if config["hidden_size"] % config["num_attention_heads"]:
        return None
    return BertSettings(
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["hidden_size"]),
        num_hidden_layers=int(config["num_hidden_layers"]),
        num_attention_heads=int(config["num_attention_heads"]),
        intermediate_size=int(config["intermediate_size"]),
        max_position_embeddings=int(config.get("max_position_embeddings", 512)),
        type_vocab_size=int(config.get("type_vocab_size", 2)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        hidden_dropout_prob=float(config.get("hidden_dropout_prob", 0.1)),
        attention_probs_dropout_prob=float(config.get("attention_probs_dropout_prob", 0.1)),
        pad_token_id=int(config.get("pad_token_id") or 0),
        initializer_range=float(config.get("initializer_range", 0.02)),
    )


def read_config(folder: str | Path, overrides: dict[str, Any] | None = None) -> dict | None:
    """A local model folder's ``config.json`` with `overrides` applied; None when `folder` is
    not a local folder with one (a hub name: transformers resolves it)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    return {**json.loads(path.read_text(encoding="utf-8")), **(overrides or {})}


class _Embeddings(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=s.pad_token_id)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, ids: Tensor) -> Tensor:
        """(B, L) token ids → (B, L, D); every token of segment 0, positions 0..L-1."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        x = x + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.heads = s.num_attention_heads
        self.dropout_p = s.attention_probs_dropout_prob
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """(B, L, D) states, (B, 1, 1, L) bool (True = attend) → (B, L, D) attended values."""
        b, n, d = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.query(x)),
            heads(self.key(x)),
            heads(self.value(x)),
            attn_mask=keep,
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(b, n, d)


class _DenseNorm(nn.Module):
    """``LayerNorm(dropout(dense(x)) + residual)``: the output of attention and of the MLP."""

    def __init__(self, width_in: int, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.self = _SelfAttention(s)
        self.output = _DenseNorm(s.hidden_size, s)


class _Intermediate(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)


class _Layer(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.attention = _Attention(s)
        self.intermediate = _Intermediate(s)
        self.output = _DenseNorm(s.intermediate_size, s)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        x = self.attention.output(self.attention.self(x, keep), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Encoder(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(s) for _ in range(s.num_hidden_layers))


class BertEncoder(nn.Module):
    """transformers' ``BertModel`` without its pooler: token ids → last hidden states.

    Args:
        settings: the architecture (:func:`bert_settings` of a ``config.json``).
    """

    def __init__(self, settings: BertSettings) -> None:
        super().__init__()
        self.settings = settings
        self.embeddings = _Embeddings(settings)
        self.encoder = _Encoder(settings)
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        # transformers' BERT initialisation: N(0, initializer_range) weights, zero biases and
        # padding row, unit LayerNorm.
        std = self.settings.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, L) int64 token ids, (B, L) mask (nonzero/True = token) → (B, L, D) hidden states."""
        keep = mask.bool()[:, None, None, :]
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return x

    def load_pretrained(self, folder: str | Path) -> bool:
        """Loads ``folder/model.safetensors`` (a ``BertModel``'s or ``BertFor…``'s weights;
        the pooler and heads are ignored). False when the folder has no safetensors file (the
        caller lets transformers read its other formats).

        Raises:
            ValueError: the file lacks one of this encoder's tensors or has another shape.
        """
        from safetensors.torch import load_file

        path = Path(folder) / "model.safetensors"
        if not path.is_file():
            return False
        stored = load_file(str(path))
        prefix = "bert." if any(k.startswith("bert.") for k in stored) else ""
        wanted = self.state_dict()
        weights = {k: stored[prefix + k] for k in wanted if prefix + k in stored}
        missing = sorted(set(wanted) - set(weights))
        if missing:
            raise ValueError(f"{path} lacks {len(missing)} BERT tensor(s), e.g. {missing[0]!r}")
        for key, value in weights.items():
            if value.shape != wanted[key].shape:
                raise ValueError(
                    f"{path}: {key} has shape {tuple(value.shape)}, the config says "
                    f"{tuple(wanted[key].shape)}"
                )
        self.load_state_dict(weights)
        return True
