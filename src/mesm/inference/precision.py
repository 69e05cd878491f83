"""Moved to :mod:`mesm.trained.precision`; this name stays only until
``benchmarks/bench_sparse.py`` imports it from there (then delete this file)."""

from mesm.trained.precision import resolve_precision

__all__ = ["resolve_precision"]
