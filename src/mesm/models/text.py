"""Text encoder: any Hugging Face encoder; its first-token (CLS) state is the text feature y.

A local BERT folder (the default MiniLM among them) runs on :class:`mesm.models.bert.BertEncoder`,
the same network and parameter names without importing transformers' model classes; any other
encoder runs on transformers' ``AutoModel``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mesm.models.bert import BertEncoder, bert_settings, read_config
from mesm.resources import default_text_model, quiet_transformers


class TextEncoder(nn.Module):
    """A Hugging Face text encoder (``BertEncoder`` for local BERTs, else ``AutoModel``).

    Args:
        name_or_path: Hugging Face model name or local folder; None = offline MiniLM-L6 default.
        pretrained: load weights (False: random init from the model's config).
        overrides: config fields to override (e.g. a tiny random encoder for tests).
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        pretrained: bool = True,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        path = name_or_path or default_text_model()
        local = read_config(path, overrides)
        settings = bert_settings(local) if local is not None else None
        if settings is not None:
            self.model: nn.Module = BertEncoder(settings)
            if not pretrained or self.model.load_pretrained(path):
                self.model.train()
                self.hidden_size: int = settings.hidden_size
                self.vocab_size: int = settings.vocab_size
                return
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(path, **(overrides or {}))
        # Only the first-token state is used: drop a pooler head where the architecture has one,
        # so every parameter of the encoder receives a gradient.
        # (transformers would also report the unused pooler weights as "unexpected": silence it.)
        kwargs: dict[str, Any] = {"add_pooling_layer": False}
        with quiet_transformers():
            self._load(AutoModel, path, config, pretrained, kwargs)
        # `from_pretrained` returns the encoder in eval mode; a new module is in train mode like
        # every other part of the model (fine-tuning with dropout, as the paper does).
        self.model.train()
        self.hidden_size = config.hidden_size
        self.vocab_size = config.vocab_size

    def _load(
        self, auto_model: Any, path: str, config: Any, pretrained: bool, kwargs: dict
    ) -> None:
        for attempt in (kwargs, {}):
            try:
                if pretrained:
                    self.model = auto_model.from_pretrained(path, config=config, **attempt)
                else:
                    self.model = auto_model.from_config(config, **attempt)
                return
            except TypeError:
                if not attempt:
                    raise

    def forward(self, text_ids: Tensor, text_mask: Tensor) -> Tensor:
        """(B, L) token ids + (B, L) bool mask (True = token) → (B, D) first-token states."""
        if isinstance(self.model, BertEncoder):
            return self.model(text_ids, text_mask)[:, 0]
        out = self.model(input_ids=text_ids, attention_mask=text_mask.long())
        return out.last_hidden_state[:, 0]
