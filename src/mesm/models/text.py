"""Text encoder: any Hugging Face encoder; its first-token (CLS) state is the text feature y."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mesm.resources import default_text_model


class TextEncoder(nn.Module):
    """Wraps ``transformers.AutoModel``.

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
        from transformers import AutoConfig, AutoModel

        path = name_or_path or default_text_model()
        config = AutoConfig.from_pretrained(path, **(overrides or {}))
        # Only the first-token state is used: drop a pooler head where the architecture has one,
        # so every parameter of the encoder receives a gradient.
        kwargs: dict[str, Any] = {"add_pooling_layer": False}
        for attempt in (kwargs, {}):
            try:
                if pretrained:
                    self.model = AutoModel.from_pretrained(path, config=config, **attempt)
                else:
                    self.model = AutoModel.from_config(config, **attempt)
                break
            except TypeError:
                if not attempt:
                    raise
        self.hidden_size: int = config.hidden_size

    def forward(self, text_ids: Tensor, text_mask: Tensor) -> Tensor:
        """(B, L) token ids + (B, L) bool mask (True = token) → (B, D) first-token states."""
        out = self.model(input_ids=text_ids, attention_mask=text_mask.long())
        return out.last_hidden_state[:, 0]
