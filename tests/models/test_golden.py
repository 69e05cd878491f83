"""Golden numbers of the `paper` preset: parameter counts and dense FLOPs per face / mel chunk."""

from __future__ import annotations

import torch

from mesm.analysis.flops import pathway_flops
from mesm.models import create_model


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


def _pathway_params(in_channels: int, flat: int, d: int = 64, ffn: int = 256, k: int = 6) -> int:
    """Hand count of a paper-preset pathway (convs have no bias; BN has weight and bias)."""
    total = 64 * in_channels * 25 + 2 * 64 + 4 * (64 * 64 * 9 + 2 * 64)
    for a, b in ((64, 128), (128, 256), (256, 512)):
        total += a * b * 9 + b * b * 9 + 2 * 2 * b
    total += flat * 1024 + 1024 + 1024 * d + d  # MLP
    layer = (d * 3 * d + 3 * d) + (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 2 * 2 * d
    total += d + 4 * layer + 2 * d  # CLS, 4 layers, final LayerNorm
    return total + d * k + k


def test_paper_preset_parameter_counts():
    model = create_model("fe2e", preset="paper", text_pretrained=False)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.visual) == _pathway_params(3, 512 * 3 * 3) == 9_787_078
    assert count(model.audio) == _pathway_params(1, 512 * 8 * 2) == 13_453_894
    assert count(model.text) == 22_565_376  # MiniLM-L6 without its pooler
    assert count(model) == 45_808_661
    mesm = create_model("mesm", preset="paper", text_pretrained=False)
    attention = sum(
        p.numel() for n, p in mesm.named_parameters() if ".attention." in n and n[0] in "av"
    )
    assert count(mesm) == count(model) + attention
    assert attention == 2 * sum(c * 128 + 128 + 384 * 128 + 128 for c in (64, 128, 256))


def test_paper_preset_dense_flops_of_one_face_and_one_chunk():
    model = create_model("fe2e", preset="paper", text_pretrained=False).eval()
    face = pathway_flops(model.visual, torch.randn(1, 3, 48, 48))
    chunk = pathway_flops(model.audio, torch.randn(1, 1, 128, 32))
    assert face.features == _extractor_flops(3, 48, 48) == 965_967_872
    assert chunk.features == _extractor_flops(1, 128, 32) == 1_690_959_872
    assert face.attention == chunk.attention == 0
