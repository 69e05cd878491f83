"""Numeric precision of training and inference, resolved in one place for every command.

A requested precision is one of :data:`PRECISIONS`:

=================  =====================================================================
``auto``           bf16 mixed precision on a CPU with bf16 matrix units (x86 ``avx512_bf16``
                   or ``amx_bf16``, Arm ``bf16``); bf16 on a CUDA GPU that supports it, fp16
                   (with gradient scaling, in training) on one that does not; fp32 elsewhere
``32``             float32 everywhere (Lightning's ``32-true``)
``bf16``           weights in float32, compute under ``torch.autocast`` in bfloat16
                   (Lightning's ``bf16-mixed``)
``16-mixed``       the same with float16 (CUDA only; Lightning scales the loss)
=================  =====================================================================

Lightning's own names (``32-true``, ``bf16-mixed``, ``16``) are accepted too. Weights always stay
float32: "mixed" means autocast, which runs matrix products (linear layers, convolutions, the
sparse engine's GEMMs) in the low precision and keeps reductions that need range (softmax,
batch-norm statistics, the loss) in float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mesm.errors import UsageError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "32", "bf16", "16-mixed", "bf16-mixed", "32-true")
_ALIASES = {
    "32": "32-true",
    "32-true": "32-true",
    "fp32": "32-true",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "fp16": "16-mixed",
}
# torch is imported where a precision is used, not to list them (the CLI's parser reads PRECISIONS).
_DTYPES = {"32-true": None, "bf16-mixed": "bfloat16", "16-mixed": "float16"}
_LABELS = {"32-true": "fp32", "bf16-mixed": "bf16 autocast", "16-mixed": "fp16 autocast"}
# /proc/cpuinfo flags of bf16 matrix (dot-product) instructions: x86 AVX512-BF16 and AMX-BF16,
# Arm's BF16 extension (BFDOT/BFMMLA; listed as "bf16" under "Features").
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: what Lightning is told, and the autocast of inference.

    Attributes:
        requested: what the user asked for ("auto", "32", "bf16", ...).
        lightning: "32-true", "bf16-mixed" or "16-mixed".
        device_type: "cpu", "cuda", ... (the autocast device).
        reason: why ``auto`` chose it ("" when it was asked for explicitly).
    """

    requested: str
    lightning: str
    device_type: str
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for float32."""
        import torch

        name = _DTYPES[self.lightning]
        return None if name is None else getattr(torch, name)

    def autocast(self) -> AbstractContextManager:
        """``torch.autocast`` in the low dtype, or a no-op context for float32."""
        if self.dtype is None:
            return nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        """One line saying what runs, and why when ``auto`` picked it."""
        line = f"precision: {_LABELS[self.lightning]} on {self.device_type} ({self.lightning})"
        return f"{line}; auto: {self.reason}" if self.reason else line


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The bf16 matrix-unit flags this CPU reports.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (read when None; no file, e.g. on macOS or
            Windows, means no flags).

    Returns:
        The flags of :data:`BF16_CPU_FLAGS` present, in that order.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            found.update(value.split())
    return [f for f in BF16_CPU_FLAGS if f in found]


def device_type(device: str | torch.device) -> str:
    """ "cpu", "cuda", ... of a device name like "cuda:1" (or a Lightning accelerator)."""
    if not isinstance(device, str):  # a torch.device
        return device.type
    name = device.split(":")[0].lower()
    if name == "gpu":
        return "cuda"
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_precision(
    requested: str | Precision = "auto",
    device: str | torch.device = "cpu",
    *,
    cpuinfo: str | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """Turns a requested precision into what runs on `device`.

    Args:
        requested: one of :data:`PRECISIONS` (or an already resolved :class:`Precision`, which
            is returned as is when it is for the same device type, else resolved again).
        device: where the model runs: "cpu", "cuda", "cuda:1", or a Lightning accelerator
            ("auto", "gpu", "cpu").
        cpuinfo: ``/proc/cpuinfo`` text to read the CPU flags from (None: this machine's).
        cuda_bf16: whether the GPU supports bf16 (None: ask torch).

    Returns:
        The resolved precision.

    Raises:
        UsageError: for an unknown precision, or fp16 on a CPU.
    """
    kind = device_type(device)
    if isinstance(requested, Precision):
        if requested.device_type == kind:
            return requested
        requested = requested.requested
    name = str(requested).strip().lower()
    if name == "auto":
        return _auto(kind, cpuinfo, cuda_bf16)
    if name not in _ALIASES:
        raise UsageError(
            f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)} "
            "(or Lightning's 16)"
        )
    lightning = _ALIASES[name]
    if lightning == "16-mixed" and kind == "cpu":
        raise UsageError("fp16 mixed precision (16-mixed) needs a CUDA GPU; on a CPU use bf16")
    return Precision(str(requested), lightning, kind)


def _auto(kind: str, cpuinfo: str | None, cuda_bf16: bool | None) -> Precision:
    if kind == "cuda":
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if cuda_bf16:
            return Precision("auto", "bf16-mixed", kind, "this GPU supports bf16")
        return Precision("auto", "16-mixed", kind, "this GPU has no bf16: fp16 with loss scaling")
    if kind == "cpu":
        flags = cpu_bf16_flags(cpuinfo)
        if flags:
            return Precision(
                "auto", "bf16-mixed", kind, f"this CPU has bf16 matrix units ({flags[0]})"
            )
        return Precision("auto", "32-true", kind, "this CPU reports no bf16 matrix units")
    return Precision("auto", "32-true", kind, f"no mixed-precision default for {kind!r}")


def autocast(
    precision: str | Precision | None, device: str | torch.device = "cpu"
) -> AbstractContextManager:
    """The autocast context of `precision` on `device`; None = none of our own (the caller's).

    Inner helpers take ``precision=None`` so that a caller's resolved choice (or its own
    ``torch.autocast`` block) is what runs.
    """
    if precision is None:
        return nullcontext()
    return resolve_precision(precision, device).autocast()
