"""The sparse feature-map type shared by every sparse op.

A :class:`SparseMap` holds the active sites of a batch of 2D feature maps (the flat list of all
faces or mel chunks of a batch of utterances):

======================  =============================================================
``features``            float (N, C): one row per active site
``coords``              int32 (N, 3): (sample, row, col); "sample" indexes the flat
                        frame/chunk list. Rows are sorted by (sample, row, col), unique.
``spatial_shape``       (H, W)
``num_samples``         F, the number of frames/chunks (samples may have no active site)
======================  =============================================================

The sorted order is an invariant kept by every op, so features and coordinates can never drift
apart (the paper's reference code fed features and coordinates in two different orders).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from mesm.sparse.engine import compiled_ops

_OFFSETS_3X3 = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]


@dataclass(eq=False)
class SparseMap:
    """Active sites of F feature maps of size (H, W); see the module docstring for the contract.

    Args:
        features: (N, C) float.
        coords: (N, 3) int32 (sample, row, col), sorted and unique.
        spatial_shape: (H, W).
        num_samples: F.
        check: validate the contract (costs a sort check; on by default).
    """

    features: Tensor
    coords: Tensor
    spatial_shape: tuple[int, int]
    num_samples: int
    check: bool = True
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.spatial_shape = (int(self.spatial_shape[0]), int(self.spatial_shape[1]))
        if not self.check:
            return
        f, c = self.features, self.coords
        if f.dim() != 2:
            raise ValueError(f"features must be (N, C), got shape {tuple(f.shape)}")
        if c.dim() != 2 or c.shape[1] != 3 or c.dtype != torch.int32:
            raise ValueError(f"coords must be int32 (N, 3), got {c.dtype} {tuple(c.shape)}")
        if c.shape[0] != f.shape[0]:
            raise ValueError(f"{f.shape[0]} feature rows but {c.shape[0]} coordinates")
        if c.device != f.device:
            raise ValueError("features and coords must be on the same device")
        if c.shape[0]:
            h, w = self.spatial_shape
            lo = c.min(0).values
            hi = c.max(0).values
            if lo.min() < 0 or hi[0] >= self.num_samples or hi[1] >= h or hi[2] >= w:
                raise ValueError(
                    f"coords out of range for {self.num_samples} samples of {h}x{w}: "
                    f"min {lo.tolist()}, max {hi.tolist()}"
                )
            key = self.keys()
            if c.shape[0] > 1 and not bool((key[1:] > key[:-1]).all()):
                raise ValueError("coords must be sorted by (sample, row, col) and unique")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dense(cls, x: Tensor, mask: Tensor | None = None) -> SparseMap:
        """Sparse view of a dense batch.

        Args:
            x: (F, C, H, W) feature maps.
            mask: (F, H, W) bool, True = active; all sites when None.

        Returns:
            The active sites in canonical order.
        """
        num, _, h, w = x.shape
        if mask is None:
            mask = torch.ones(num, h, w, dtype=torch.bool, device=x.device)
        if mask.shape != (num, h, w):
            raise ValueError(f"mask must be {(num, h, w)}, got {tuple(mask.shape)}")
        # nonzero lists sites row-major (already sorted) but column-strided: make it contiguous.
        coords = mask.nonzero().to(torch.int32).contiguous()
        flat = x.permute(0, 2, 3, 1).reshape(num * h * w, -1)
        features = flat if coords.shape[0] == flat.shape[0] else flat[mask.reshape(-1)]
        return cls(features, coords, (h, w), num, check=False)

    def to_dense(self) -> Tensor:
        """Dense (F, C, H, W) maps with zeros at inactive sites (a channels-last tensor)."""
        h, w = self.spatial_shape
        if self.is_full:
            out = self.features
        else:
            out = self.features.new_zeros(self.num_samples * h * w, self.features.shape[1])
            out = out.index_copy(0, self.keys(), self.features)
        return out.view(self.num_samples, h, w, -1).permute(0, 3, 1, 2)

    def with_features(self, features: Tensor) -> SparseMap:
        """Same sites (and cached neighbour tables), new (N, C') features."""
        if features.shape[0] != self.features.shape[0]:
            raise ValueError(f"expected {self.features.shape[0]} rows, got {features.shape[0]}")
        return SparseMap(
            features, self.coords, self.spatial_shape, self.num_samples, False, self._cache
        )

    def select(self, keep: Tensor) -> SparseMap:
        """Subset of the sites; `keep` is (N,) bool. Order (and so the invariant) is preserved."""
        return SparseMap(
            self.features[keep], self.coords[keep], self.spatial_shape, self.num_samples, False
        )

    def select_rows(self, index: Tensor) -> SparseMap:
        """Subset of the sites by (M,) int64 row indices in increasing order (order preserved)."""
        return SparseMap(
            self.features.index_select(0, index),
            self.coords.index_select(0, index),
            self.spatial_shape,
            self.num_samples,
            False,
        )

    # -- indexing helpers ---------------------------------------------------------------------
    @property
    def num_active(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_sites(self) -> int:
        """F·H·W, the sites of the dense maps."""
        return self.num_samples * self.spatial_shape[0] * self.spatial_shape[1]

    @property
    def is_full(self) -> bool:
        """Every site of every map is active (so row i is site i of the dense maps)."""
        return self.num_active == self.num_sites

    @property
    def sample_index(self) -> Tensor:
        """(N,) int64 sample of each site."""
        return self.coords[:, 0].long()

    def keys(self) -> Tensor:
        """(N,) int64 linear index sample*H*W + row*W + col (monotone in canonical order)."""
        h, w = self.spatial_shape
        c = self.coords.long()
        return (c[:, 0] * h + c[:, 1]) * w + c[:, 2]

    def counts(self) -> Tensor:
        """(F,) int64 number of active sites per sample."""
        return torch.bincount(self.sample_index, minlength=self.num_samples)

    def index_table(self) -> Tensor:
        """(F, H + 2, W + 2) int64 row of the active site at each (padded) position, N elsewhere.

        Cached on the site set, like :meth:`neighbor_index` which is read from it.
        """
        if "table" not in self._cache and self._build_rulebook():
            return self._cache["table"]
        if "table" not in self._cache:
            h, w = self.spatial_shape
            n = self.num_active
            dev = self.coords.device
            table = torch.full((self.num_samples, h + 2, w + 2), n, dtype=torch.long, device=dev)
            c = self.coords.long()
            table[c[:, 0], c[:, 1] + 1, c[:, 2] + 1] = torch.arange(n, device=dev)
            self._cache["table"] = table
        return self._cache["table"]

    def neighbor_index(self) -> Tensor:
        """Rulebook of a 3x3 submanifold convolution, cached on the site set.

        Returns:
            (N, 9) int64: row of the active neighbour at each offset (row-major over
            dr, dc in -1..1), or N (a zero row appended by the caller) where the neighbour is
            inactive or off the map.
        """
        if "nbr3" not in self._cache and self._build_rulebook():
            return self._cache["nbr3"]
        if "nbr3" not in self._cache:
            h, w = self.spatial_shape
            dev = self.coords.device
            # A padded index map turns every neighbour lookup into one gather, no hashing.
            table = self.index_table()
            c = self.coords.long()
            base = (c[:, 0] * (h + 2) + c[:, 1] + 1) * (w + 2) + c[:, 2] + 1
            offsets = torch.tensor([dr * (w + 2) + dc for dr, dc in _OFFSETS_3X3], device=dev)
            self._cache["nbr3"] = table.view(-1)[base[:, None] + offsets[None, :]]
        return self._cache["nbr3"]

    def _build_rulebook(self) -> bool:
        """Builds the index table and the 3x3 rulebook together with the compiled engine (one op);
        False where the engine does not run (then each is built with PyTorch ops)."""
        ops = compiled_ops(self.coords.device)
        if ops is None:
            return False
        h, w = self.spatial_shape
        table, nbr = ops.rulebook3x3(self.coords.contiguous(), self.num_samples, h, w)
        self._cache["table"], self._cache["nbr3"] = table, nbr
        return True
