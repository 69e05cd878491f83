"""The embedded demo: FE2E and MESM side by side on generated inputs.

Builds both models from a preset (with the real offline text encoder), gives MESM FE2E's weights
(so the only difference is the sparse selection), runs them on two utterances of generated face
crops and mel chunks with real transcripts, and measures the feature-extraction FLOPs of each.
The weights are untrained: the probabilities show the interface, not a prediction.
"""

from __future__ import annotations

from typing import Any

import torch

from mesm.analysis.flops import model_feature_flops
from mesm.models import create_model
from mesm.resources import default_text_model

EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
TRANSCRIPTS = ("I can't believe you did this to me!", "That is wonderful news, thank you so much.")


def forward_demo(
    preset: str = "paper", p: float = 0.7, frames: int = 8, chunks: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Runs FE2E and MESM (same weights) on two generated utterances.

    Args:
        preset: model preset ("paper" or "tiny").
        p: MESM's nucleus mass.
        frames: face crops per utterance.
        chunks: mel chunks per utterance.
        seed: RNG seed for weights and inputs.

    Returns:
        {"emotions", "transcripts", "models": {name: {"probabilities": [[...]],
        "gflops_per_utterance": {"a", "v", "total", "attention"}, "sites_kept": {...}}},
        "flops_ratio"}.
    """
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    fe2e = create_model("fe2e", preset, num_classes=len(EMOTIONS)).eval()
    mesm = create_model("mesm", preset, num_classes=len(EMOTIONS), p=p).eval()
    mesm.load_state_dict(fe2e.state_dict(), strict=False)
    tokenizer = AutoTokenizer.from_pretrained(fe2e.config.text_model or default_text_model())
    tokens = tokenizer(
        list(TRANSCRIPTS), padding=True, truncation=True, max_length=100, return_tensors="pt"
    )
    g = torch.Generator().manual_seed(seed)
    num = len(TRANSCRIPTS)
    batch = {
        "text_ids": tokens["input_ids"],
        "text_mask": tokens["attention_mask"].bool(),
        "faces": torch.randn(num * frames, 3, 48, 48, generator=g),
        "face_lengths": torch.full((num,), frames, dtype=torch.long),
        "specs": torch.rand(num * chunks, 1, 128, 32, generator=g),
        "spec_lengths": torch.full((num,), chunks, dtype=torch.long),
    }
    report: dict[str, Any] = {"emotions": list(EMOTIONS), "transcripts": list(TRANSCRIPTS), "p": p}
    models = {}
    for name, model in (("FE2E", fe2e), ("MESM", mesm)):
        with torch.no_grad():
            probs = torch.sigmoid(model(**batch))
        flops = model_feature_flops(model, batch)
        gflops = {m: f.features / num / 1e9 for m, f in flops.items()}
        gflops["total"] = sum(gflops.values())
        gflops["attention"] = sum(f.attention for f in flops.values()) / num / 1e9
        kept = {
            f"{m}.{layer}": round(active / dense, 4)
            for m, f in flops.items()
            for layer, (active, dense) in f.sites.items()
        }
        models[name] = {
            "probabilities": probs.tolist(),
            "gflops_per_utterance": gflops,
            "sites_kept": kept,
        }
    report["models"] = models
    report["flops_ratio"] = (
        models["MESM"]["gflops_per_utterance"]["total"]
        / models["FE2E"]["gflops_per_utterance"]["total"]
    )
    return report
