"""Golden numbers of the `paper` preset: parameter counts and dense FLOPs per face / mel chunk."""

from __future__ import annotations

import torch

from mesm.analysis.flops import pathway_flops
from mesm.models import MODERN_TRANSFORMER, create_model


def _conv(c_in: int, c_out: int, k: int, sites: int) -> int:
    return 2 * c_out * c_in * k * k * sites


def _extractor_flops(in_channels: int, h: int, w: int) -> int:
    """Hand count: 5x5 conv at full size, 4 convs at 1/2, three stages, MLP (2 FLOPs per MAC)."""
    total = _conv(in_channels, 64, 5, h * w)
    sites = (h // 2) * (w // 2)
    total += 4 * _conv(64, 64, 3, sites)
    for c_in, c_out in ((64, 128), (128, 256), (256, 512)):
        total += _conv(c_in, c_out, 3, sites) + _conv(c_out, c_out, 3, sites)
        sites //= 4
    return total + 2 * 512 * sites * 1024 + 2 * 1024 * 64


def _cnn_mlp_params(in_channels: int, flat: int, d: int = 64) -> int:
    """Hand count of a paper-preset CNN + MLP (convs have no bias; BN has weight and bias)."""
    total = 64 * in_channels * 25 + 2 * 64 + 4 * (64 * 64 * 9 + 2 * 64)
    for a, b in ((64, 128), (128, 256), (256, 512)):
        total += a * b * 9 + b * b * 9 + 2 * 2 * b
    return total + flat * 1024 + 1024 + 1024 * d + d


def _transformer_params(d: int, ffn: int, layers: int = 4, final_norm: bool = False) -> int:
    """CLS embedding + `layers` x (attention in/out projections, feed-forward, 2 LayerNorms)."""
    layer = (d * 3 * d + 3 * d) + (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 2 * 2 * d
    return d + layers * layer + (2 * d if final_norm else 0)


def _attention_params(text_dim: int, widths: tuple[int, ...], channels=(64, 128, 256)) -> int:
    """Per layer: W_x (C -> A, with bias), W_y (D -> A, no bias), v (A -> 1, no bias)."""
    return sum(c * a + a + text_dim * a + a for c, a in zip(channels, widths, strict=True))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _attention_count(model: torch.nn.Module, pathway: str) -> int:
    return _count(getattr(model, pathway).attention)


def test_paper_preset_parameter_counts():
    model = create_model("fe2e", preset="paper", text_pretrained=False)
    head = 64 * 6 + 6
    # The reference's sequence transformer: nn.TransformerEncoderLayer(64, 4) defaults
    # (feed-forward 2048, post-norm), 4 layers, no final norm, plus the CLS embedding.
    for pathway in (model.visual, model.audio):
        assert _count(pathway.transformer) == _transformer_params(64, 2048) == 1_124_672
        assert pathway.transformer.encoder.norm is None
        assert pathway.transformer.positions == "none"
        assert not pathway.transformer.encoder.layers[0].norm_first
    assert _count(model.visual.low_level) + _count(model.visual.stages) + _count(
        model.visual.mlp
    ) == _cnn_mlp_params(3, 512 * 3 * 3)
    assert _count(model.visual) == _cnn_mlp_params(3, 512 * 3 * 3) + 1_124_672 + head
    assert _count(model.visual) == 10_711_622
    assert _count(model.audio) == _cnn_mlp_params(1, 512 * 8 * 2) + 1_124_672 + head
    assert _count(model.audio) == 14_378_438
    assert _count(model.text) == 22_565_376  # MiniLM-L6 without its pooler
    assert _count(model) == 47_657_749
    mesm = create_model("mesm", preset="paper", text_pretrained=False)
    # Attention width = the channels of the scored map (64, 128, 256); MiniLM is 384 wide.
    for pathway in ("visual", "audio"):
        assert _attention_count(mesm, pathway) == _attention_params(384, (64, 128, 256))
    attention = _attention_count(mesm, "visual") + _attention_count(mesm, "audio")
    assert _count(mesm) == _count(model) + attention


def test_paper_preset_attention_counts_at_the_papers_text_width():
    # The reference scores with a 768-wide text feature (ALBERT-base): 430,976 per pathway.
    wide_text = {"hidden_size": 768, "num_hidden_layers": 1, "intermediate_size": 32}
    mesm = create_model(
        "mesm", preset="paper", modalities="tv", text_pretrained=False, text_overrides=wide_text
    )
    assert _attention_count(mesm, "visual") == _attention_params(768, (64, 128, 256)) == 430_976


def test_modern_transformer_and_fixed_attention_width_are_options():
    # The variant mesm used before following the paper: pre-norm, final LayerNorm, sinusoidal
    # positions, feed-forward 256; and one 128-wide attention for every layer.
    wide_text = {"hidden_size": 768, "num_hidden_layers": 1, "intermediate_size": 32}
    mesm = create_model(
        "mesm",
        preset="paper",
        modalities="tv",
        text_pretrained=False,
        text_overrides=wide_text,
        attention_dim=128,
        **MODERN_TRANSFORMER,
    )
    transformer = mesm.visual.transformer
    assert _count(transformer) == _transformer_params(64, 256, final_norm=True) == 200_128
    assert transformer.positions == "sinusoidal"
    assert transformer.encoder.layers[0].norm_first
    assert _attention_count(mesm, "visual") == _attention_params(768, (128,) * 3) == 353_024
    per_layer = create_model(
        "mesm", preset="tiny", modalities="tv", text_pretrained=False, attention_dim=[4, 8, 12]
    )
    assert [layer.proj_x.out_features for layer in per_layer.visual.attention] == [4, 8, 12]


def test_paper_preset_dense_flops_of_one_face_and_one_chunk():
    model = create_model("fe2e", preset="paper", text_pretrained=False).eval()
    face = pathway_flops(model.visual, torch.randn(1, 3, 48, 48))
    chunk = pathway_flops(model.audio, torch.randn(1, 1, 128, 32))
    assert face.features == _extractor_flops(3, 48, 48) == 965_967_872
    assert chunk.features == _extractor_flops(1, 128, 32) == 1_690_959_872
    assert face.attention == chunk.attention == 0
