"""The text encoder wrapper equals plain transformers on the same weights."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from mesm.models.text import TextEncoder
from mesm.resources import default_text_model

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def test_text_encoder_first_token_equals_plain_transformers():
    torch.manual_seed(0)
    ours = TextEncoder(pretrained=False, overrides=TINY).eval()
    config = AutoConfig.from_pretrained(default_text_model(), **TINY)
    plain = AutoModel.from_config(config).eval()
    missing, unexpected = plain.load_state_dict(ours.model.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("pooler.") for k in missing)
    tokens = AutoTokenizer.from_pretrained(default_text_model())(
        ["I am so happy today", "no"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        got = ours(tokens["input_ids"], tokens["attention_mask"].bool())
        want = plain(**tokens).last_hidden_state[:, 0]
    assert got.shape == (2, 32)
    assert torch.allclose(got, want, atol=1e-6)


def test_a_pretrained_encoder_starts_in_train_mode_like_the_rest_of_the_model():
    encoder = TextEncoder(pretrained=True)  # the offline MiniLM weights
    assert all(m.training for m in encoder.modules())
    assert not any(m.training for m in encoder.eval().modules())
