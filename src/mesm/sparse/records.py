"""FLOPs and sites of every sparse op that runs: :class:`SparseFlopCounter` and :func:`op_scope`.

Each sparse op books one :class:`SparseOpRecord` (2 · multiply-adds actually executed) in every
active counter of its thread; analysis reads them to count MESM's FLOPs from the sites processed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_local = threading.local()


@dataclass
class SparseOpRecord:
    """One executed sparse op: its kind, a name set by the caller, sites and FLOPs.

    ``path`` says how it ran: "gather" (sparse: only the active sites were computed), "dense"
    (the torch engine chose the dense-masked convolution, so ``flops`` are the dense map's) or
    "spconv".
    """

    op: str
    name: str
    in_sites: int
    out_sites: int
    flops: int
    path: str = "gather"


@dataclass
class SparseFlopCounter:
    """Collects :class:`SparseOpRecord` of sparse ops run inside ``with counter:``."""

    records: list[SparseOpRecord] = field(default_factory=list)
    _scope: list[str] = field(default_factory=list)

    def __enter__(self) -> SparseFlopCounter:
        stack = getattr(_local, "counters", [])
        stack.append(self)
        _local.counters = stack
        return self

    def __exit__(self, *exc: object) -> None:
        _local.counters.remove(self)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.records)


@contextmanager
def op_scope(name: str) -> Iterator[None]:
    """Names the sparse ops run inside it (e.g. ``visual.stages.0``) in every active counter."""
    counters = getattr(_local, "counters", [])
    for c in counters:
        c._scope.append(name)
    try:
        yield
    finally:
        for c in counters:
            c._scope.pop()


def record(op: str, in_sites: int, out_sites: int, flops: int, path: str = "gather") -> None:
    for c in getattr(_local, "counters", []):
        c.records.append(SparseOpRecord(op, ".".join(c._scope), in_sites, out_sites, flops, path))
