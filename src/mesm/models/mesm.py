"""MESM: the multimodal end-to-end sparse model (Dai et al. 2021, section 3.2).

FE2E plus a cross-modal sparse CNN block before each VGG stage of the visual and audio pathways:
additive attention from the text feature to every active site of every frame/chunk, nucleus
(top-p) selection of the sites, and a sparse stage (submanifold 3x3 convolutions, BN over active
sites, ReLU, sparse 2x2 max-pool) that computes only on the kept sites. After the last stage,
inactive sites are zero in the dense map given to the MLP.

The parameters are FE2E's plus ``*.attention.*`` under the same names, so a trained FE2E state
dict loads with ``strict=False`` (only the attention layers missing): a trained FE2E can be
sparsified. At p >= 1 with ``gating="none"`` MESM computes exactly FE2E's logits.
"""

from __future__ import annotations

from mesm.models.config import ModelConfig
from mesm.models.fe2e import FE2E


class MESM(FE2E):
    """FE2E with cross-modal sparse CNN blocks; requires the text modality."""

    def __init__(self, config: ModelConfig) -> None:
        if config.arch != "mesm":
            raise ValueError(f"MESM needs a config with arch='mesm', got {config.arch!r}")
        super().__init__(config)
