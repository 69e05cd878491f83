"""mesm: end-to-end multimodal emotion recognition (FE2E and the sparse MESM).

Implements Dai, Cahyawijaya, Liu and Fung, *Multimodal End-to-End Sparse Model for Emotion
Recognition* (NAACL 2021).
"""

from mesm.models import create_model

__version__ = "0.1.0"
__all__ = ["__version__", "create_model"]
