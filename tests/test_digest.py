"""The tensors' SHA-256: stable, sensitive to names, dtypes, shapes and bytes; empty tensors too."""

from __future__ import annotations

import torch

from mesm.digest import tensors_digest


def test_digest_tells_apart_what_differs_and_accepts_empty_tensors():
    base = {"a": torch.arange(6, dtype=torch.int64), "b": torch.zeros(0, 15)}
    same = {"b": torch.zeros(0, 15), "a": torch.arange(6, dtype=torch.int64)}
    assert tensors_digest(base) == tensors_digest(same)  # name order does not matter
    variants = [
        {**base, "a": torch.arange(6, dtype=torch.int32)},  # dtype
        {**base, "a": torch.arange(6).view(2, 3)},  # shape
        {**base, "a": torch.arange(1, 7)},  # bytes
        {**base, "b": torch.zeros(0, 14)},  # an empty tensor's shape
        {"c": base["a"], "b": base["b"]},  # name
    ]
    digests = {tensors_digest(v) for v in variants}
    assert len(digests) == len(variants) and tensors_digest(base) not in digests
    # A non-contiguous view hashes like its contiguous copy.
    t = torch.arange(12).view(3, 4)
    assert tensors_digest({"t": t.t()}) == tensors_digest({"t": t.t().contiguous()})
