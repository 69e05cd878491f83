"""Sparse 2D feature maps and the ops MESM runs on them (pure PyTorch, optional spconv)."""

from mesm.sparse.conv import (
    Backend,
    SparseFlopCounter,
    SparseOpRecord,
    compute_dtype,
    conv3x3_weight_matrix,
    dense_above,
    dense_fraction,
    linear,
    op_scope,
    sparse_batch_norm,
    sparse_max_pool2x2,
    sparse_relu,
    sparse_scale,
    spconv_available,
    submanifold_conv3x3,
)
from mesm.sparse.tensor import SparseMap

__all__ = [
    "Backend",
    "SparseFlopCounter",
    "SparseMap",
    "SparseOpRecord",
    "compute_dtype",
    "conv3x3_weight_matrix",
    "dense_above",
    "dense_fraction",
    "linear",
    "op_scope",
    "sparse_batch_norm",
    "sparse_max_pool2x2",
    "sparse_relu",
    "sparse_scale",
    "spconv_available",
    "submanifold_conv3x3",
]
