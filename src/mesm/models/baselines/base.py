"""The input contract every baseline shares: padded feature sequences with masks."""

from __future__ import annotations

from torch import Tensor, nn

from mesm.models.baselines.config import BaselineConfig

MODALITY_NAMES = {"t": "text", "a": "audio", "v": "visual"}


def input_keys(modalities: str) -> tuple[str, ...]:
    """The batch keys a baseline over `modalities` reads, e.g. ("text_feats", "text_mask")."""
    keys: list[str] = []
    for m in "tav":
        if m in modalities:
            keys += [f"{MODALITY_NAMES[m]}_feats", f"{MODALITY_NAMES[m]}_mask"]
    return tuple(keys)


class BaselineModel(nn.Module):
    """Base of the two-phase baselines: holds the config and gathers the inputs per modality.

    Subclasses implement ``forward_features(inputs) -> {m: (B, D_m)}`` on the gathered
    ``{m: (feats (B, T, D), mask (B, T))}`` and ``head``-specific ``_logits``.

    Args:
        config: validated :class:`BaselineConfig`.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.modalities = "".join(m for m in "tav" if m in config.modalities)

    @property
    def input_keys(self) -> tuple[str, ...]:
        return input_keys(self.modalities)

    def gather(self, **inputs: Tensor | None) -> dict[str, tuple[Tensor, Tensor]]:
        """{"t"|"a"|"v": (feats (B, T, D) float, mask (B, T) bool)} for the model's modalities.

        Raises:
            ValueError: a needed input is missing or has the wrong width.
        """
        missing = [k for k in self.input_keys if inputs.get(k) is None]
        if missing:
            raise ValueError(f"modalities {self.modalities!r} need inputs {missing}")
        out = {}
        dims = self.config.feature_dims
        for m in self.modalities:
            name = MODALITY_NAMES[m]
            feats, mask = inputs[f"{name}_feats"], inputs[f"{name}_mask"]
            if feats.dim() != 3 or feats.shape[2] != dims[m] or mask.shape != feats.shape[:2]:
                raise ValueError(
                    f"{name}_feats {tuple(feats.shape)} / {name}_mask {tuple(mask.shape)}: "
                    f"expected (B, T, {dims[m]}) and (B, T)"
                )
            out[m] = (feats.float(), mask.bool())
        return out
