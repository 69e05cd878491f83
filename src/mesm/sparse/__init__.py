"""Sparse 2D feature maps and the ops MESM runs on them (a compiled C++ engine with an exact
pure-PyTorch fallback, optional spconv); see :mod:`mesm.sparse.engine` for which one runs."""

from mesm.sparse.conv import (
    dense_above,
    dense_fraction,
    sparse_batch_norm,
    sparse_relu,
    sparse_scale,
    submanifold_conv3x3,
)
from mesm.sparse.engine import EngineInfo, SparseEngineError, engine_info, use_engine
from mesm.sparse.gemm import compute_dtype, conv3x3_weight_matrix, linear
from mesm.sparse.pool import sparse_max_pool2x2
from mesm.sparse.records import SparseFlopCounter, SparseOpRecord, op_scope
from mesm.sparse.spconv_backend import Backend, spconv_available
from mesm.sparse.tensor import SparseMap

__all__ = [
    "Backend",
    "EngineInfo",
    "SparseEngineError",
    "SparseFlopCounter",
    "SparseMap",
    "SparseOpRecord",
    "compute_dtype",
    "conv3x3_weight_matrix",
    "dense_above",
    "dense_fraction",
    "engine_info",
    "linear",
    "op_scope",
    "sparse_batch_norm",
    "sparse_max_pool2x2",
    "sparse_relu",
    "sparse_scale",
    "spconv_available",
    "submanifold_conv3x3",
    "use_engine",
]
