"""FE2E and MESM (Dai et al. 2021, sections 3.1 and 3.2): one class, `EmotionModel`, whose config
says which it is.

FE2E (``arch="fe2e"``), the fully end-to-end model. Text: a pretrained transformer encoder; its
first-token state y is the text feature. Visual and audio: a
:class:`~mesm.models.pathways.Pathway` each, over the flat list of face crops / mel chunks of the
batch. Each modality has a linear classifier; the fused output is a learned weighted sum (no bias)
of the per-modality logits.

MESM (``arch="mesm"``), the multimodal end-to-end sparse model: FE2E plus a cross-modal sparse CNN
block before each VGG stage of the visual and audio pathways: additive attention from the text
feature to every active site of every frame/chunk, nucleus (top-p) selection of the sites, and a
sparse stage (submanifold 3x3 convolutions, BN over active sites, ReLU, sparse 2x2 max-pool) that
computes only on the kept sites. After the last stage, inactive sites are zero in the dense map
given to the MLP. Its parameters are FE2E's plus ``*.attention.*`` under the same names, so a
trained FE2E state dict loads with ``strict=False`` (only the attention layers missing): a trained
FE2E can be sparsified. At p >= 1 with ``gating="none"`` MESM computes exactly FE2E's logits.

Differences from the paper's reference code: faces are detected once in preprocessing (not inside
every forward pass) and frames of all utterances run as one batch (no per-sample loop). The
sequence transformer is the reference's by default (post-norm, feed-forward 2048, no final norm,
no positions, a CLS token and a padding mask); :class:`~mesm.models.config.ModelConfig` offers the
pre-norm / final-norm / sinusoidal-position variant as options.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from mesm.models.attention import CrossModalAttention, NucleusMass
from mesm.models.config import ModelConfig, check_p
from mesm.models.pathways import Pathway
from mesm.models.text import TextEncoder

_ATTENTION_PARAM = re.compile(r"(visual|audio)\.attention\.\d+\.")

# modality -> the Batch keys its pathway reads (see docs/architecture.md, Contracts)
INPUT_KEYS = {
    "t": ("text_ids", "text_mask"),
    "v": ("faces", "face_lengths"),
    "a": ("specs", "spec_lengths"),
}


class EmotionModel(nn.Module):
    """FE2E (dense CNN pathways) or MESM (cross-modal sparse blocks), as ``config.arch`` says.

    Args:
        config: validated :class:`ModelConfig`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.modalities = "".join(m for m in "tav" if m in c.modalities)
        text_dim = 0
        if "t" in self.modalities:
            self.text = TextEncoder(c.text_model, c.text_pretrained, c.text_overrides)
            text_dim = self.text.hidden_size
            self.text_head = nn.Sequential(
                nn.Dropout(c.dropout), nn.Linear(text_dim, c.num_classes)
            )
        # MESM: one NucleusMass shared by every attention layer of both pathways (see `set_p`).
        self._nucleus = NucleusMass(c.p) if c.mesm else None
        common = dict(
            num_classes=c.num_classes,
            low_channels=c.low_channels,
            stage_channels=c.stage_channels,
            mlp_hidden=c.mlp_hidden,
            d_model=c.d_model,
            dropout=c.dropout,
            transformer=dict(
                num_layers=c.num_layers,
                num_heads=c.num_heads,
                ffn_dim=c.ffn_dim,
                norm_first=c.norm_first,
                final_norm=c.final_norm,
                positions=c.sequence_positions,
            ),
            text_dim=text_dim,
            attention_dims=c.attention_dims,
            nucleus=self._nucleus,
            gating=c.gating,
            sparse=c.mesm,
            backend=c.sparse_backend,
        )
        if "a" in self.modalities:
            self.audio = Pathway(in_channels=1, input_shape=c.spec_shape, **common)
        if "v" in self.modalities:
            size = (c.face_size, c.face_size)
            self.visual = Pathway(in_channels=c.face_channels, input_shape=size, **common)
        num = len(self.modalities)
        self.fusion = nn.Linear(num, 1, bias=False)
        nn.init.constant_(self.fusion.weight, 1.0 / num)

    @property
    def p(self) -> float | None:
        """The nucleus mass every attention layer keeps now (None: a dense model)."""
        return None if self._nucleus is None else self._nucleus.value

    def set_p(self, p: float) -> None:
        """Runs MESM at nucleus mass `p` from now on (no retraining needed: top-p reads it at
        forward time). ``config.p`` stays the value the model was built and trained with.

        Raises:
            ValueError: a dense model, or `p` not > 0.
        """
        if self._nucleus is None:
            raise ValueError("only MESM has a nucleus mass p; this model is dense (FE2E)")
        self._nucleus.value = check_p(p)

    @contextmanager
    def using_p(self, p: float | None) -> Iterator[EmotionModel]:
        """Runs the model at nucleus mass `p` inside the block and restores the previous p
        afterwards; ``None`` leaves it unchanged (and is the only value a dense model takes)."""
        if p is None:
            yield self
            return
        previous = self.p
        self.set_p(p)
        try:
            yield self
        finally:
            self.set_p(previous)

    def attention_layers(self) -> dict[str, list[CrossModalAttention]]:
        """The cross-modal attention layers per pathway: {"visual"|"audio": [layer 0, 1, 2]}
        (empty for a dense model)."""
        out = {}
        for name in ("visual", "audio"):
            pathway = getattr(self, name, None)
            if pathway is not None and pathway.sparse:
                out[name] = list(pathway.attention)
        return out

    def dense_twin(self) -> EmotionModel:
        """The dense FE2E model with these weights, in eval mode on this model's device (the
        model itself when it is already dense).

        MESM's parameters are FE2E's plus ``*.attention.*``, so the twin is built from the same
        config with ``arch="fe2e"`` and loads the state dict with only the attention layers left.
        """
        if not self.config.mesm:
            return self
        # The text weights come from the state dict: never download or load pretrained ones.
        twin = EmotionModel(dataclasses.replace(self.config, arch="fe2e", text_pretrained=False))
        result = twin.load_state_dict(self.state_dict(), strict=False)
        stray = [k for k in result.unexpected_keys if not _ATTENTION_PARAM.match(k)]
        if result.missing_keys or stray:
            raise ValueError(
                f"FE2E twin does not match the model (missing {result.missing_keys[:5]}, "
                f"unexpected {stray[:5]})"
            )
        return twin.to(next(self.parameters()).device).eval()

    @property
    def input_keys(self) -> tuple[str, ...]:
        """The batch keys this model reads, in forward's order (e.g. ("text_ids", "text_mask",
        "faces", "face_lengths") for text + visual)."""
        return tuple(k for m in "tva" if m in self.modalities for k in INPUT_KEYS[m])

    def _check_inputs(self, **inputs: Tensor | None) -> None:
        missing = [n for n in self.input_keys if inputs.get(n) is None]
        if missing:
            raise ValueError(f"modalities {self.modalities!r} need inputs {missing}")

    def forward_features(
        self,
        text_ids: Tensor | None = None,
        text_mask: Tensor | None = None,
        faces: Tensor | None = None,
        face_lengths: Tensor | None = None,
        specs: Tensor | None = None,
        spec_lengths: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-modality utterance embeddings.

        Args:
            text_ids: (B, L) int64 token ids.
            text_mask: (B, L) bool, True = token.
            faces: (ΣT, 3, 48, 48) normalised face crops of all utterances, in batch order.
            face_lengths: (B,) int64 frames per utterance.
            specs: (ΣS, 1, 128, 32) mel chunks of all utterances, in batch order.
            spec_lengths: (B,) int64 chunks per utterance.

        Returns:
            {"t": (B, D), "a": (B, d), "v": (B, d)} for the model's modalities.
        """
        self._check_inputs(
            text_ids=text_ids,
            text_mask=text_mask,
            faces=faces,
            face_lengths=face_lengths,
            specs=specs,
            spec_lengths=spec_lengths,
        )
        feats: dict[str, Tensor] = {}
        y = None
        if "t" in self.modalities:
            y = feats["t"] = self.text(text_ids, text_mask)
        pathway_y = y if self.config.mesm else None
        if "a" in self.modalities:
            feats["a"] = self.audio.forward_features(specs, spec_lengths, pathway_y)
        if "v" in self.modalities:
            feats["v"] = self.visual.forward_features(faces, face_lengths, pathway_y)
        return feats

    def forward_modalities(self, **inputs: Tensor | None) -> dict[str, Tensor]:
        """Per-modality logits {"t"|"a"|"v": (B, K)}; same keyword inputs as :meth:`forward`."""
        feats = self.forward_features(**inputs)
        heads = {"t": "text_head", "a": "audio", "v": "visual"}
        out = {}
        for m, f in feats.items():
            head = getattr(self, heads[m])
            out[m] = head(f) if m == "t" else head.head(f)
        return out

    def forward(
        self,
        text_ids: Tensor | None = None,
        text_mask: Tensor | None = None,
        faces: Tensor | None = None,
        face_lengths: Tensor | None = None,
        specs: Tensor | None = None,
        spec_lengths: Tensor | None = None,
    ) -> Tensor:
        """Fused logits (B, K); inputs as in :meth:`forward_features`."""
        per_modality = self.forward_modalities(
            text_ids=text_ids,
            text_mask=text_mask,
            faces=faces,
            face_lengths=face_lengths,
            specs=specs,
            spec_lengths=spec_lengths,
        )
        return self.fuse(per_modality)

    def fuse(self, per_modality: dict[str, Tensor], keep: Tensor | None = None) -> Tensor:
        """The learned weighted sum of the per-modality logits, (B, K).

        Args:
            per_modality: {"t"|"a"|"v": (B, K)} as from :meth:`forward_modalities`.
            keep: optional (B, M) 0/1 per utterance and modality (in ``self.modalities``'
                order); a 0 leaves that modality's logits out of the sum (training's modality
                dropout: an absent modality adds no evidence).
        """
        stacked = torch.stack([per_modality[m] for m in self.modalities], dim=-1)  # (B, K, M)
        if keep is not None:
            stacked = stacked * keep.to(stacked.dtype).unsqueeze(1)
        return self.fusion(stacked).squeeze(-1)
