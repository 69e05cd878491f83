"""The SHA-256 of a set of named tensors: what the feature cache and the checkpoints store next
to their tensors, so that damaged or swapped files are an error rather than wrong numbers."""

from __future__ import annotations

import hashlib

import torch


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():  # an empty tensor has no bytes (and cannot be viewed as bytes)
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
