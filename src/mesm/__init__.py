"""mesm: end-to-end multimodal emotion recognition (FE2E and the sparse MESM).

Implements Dai, Cahyawijaya, Liu and Fung, *Multimodal End-to-End Sparse Model for Emotion
Recognition* (NAACL 2021).
"""

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "from_pretrained", "load_model"]


def __getattr__(name: str):
    # Lazy, so `import mesm.data` (and DataLoader workers) never pull in the models.
    if name == "create_model":
        from mesm.models import create_model

        return create_model
    if name in ("from_pretrained", "load_model"):
        # A trained model from a .safetensors file, a model folder or a Hugging Face repo id.
        from mesm.trained.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'mesm' has no attribute {name!r}")
