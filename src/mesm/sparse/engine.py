"""Which sparse engine runs: the compiled C++ ops, or the pure-PyTorch fallback.

The sparse ops of :mod:`mesm.sparse` have two CPU implementations with the same results:

* **compiled** — ``csrc/sparse_ops.cpp``, a small C++ extension (OpenMP through ATen's
  ``parallel_for``; oneDNN's GEMM) registered with ``torch.library`` as ``torch.ops.mesm.*``,
  so that autograd, autocast, ``FlopCounterMode`` and ``torch.compile`` each see one op per step
  (rulebook, convolution, its backward, pooling, softmax + top-p). It is built once per source
  and torch version with the machine's C++ compiler (``scripts/install.sh`` builds it; otherwise
  the first sparse op does) and cached under ``$MESM_CACHE_DIR/extensions`` (default
  ``~/.cache/mesm/extensions``).
* **torch** — the same steps as PyTorch ops (several dispatched ops per step): the exact
  fallback where no compiler exists or the build fails, and the engine on other devices.

``MESM_SPARSE_ENGINE`` chooses: ``auto`` (default: compiled when it builds, else torch, with the
reason kept in :func:`engine_info`), ``compiled`` (a failed build is an error) or ``torch``.
:func:`use_engine` overrides it in a block (tests, benchmarks).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from mesm.errors import MissingDependencyError, UsageError

Engine = Literal["auto", "compiled", "torch"]
_ENGINES = ("auto", "compiled", "torch")
_SOURCE = Path(__file__).with_name("csrc") / "sparse_ops.cpp"
_NAME = "mesm_sparse_ops"

_lock = threading.Lock()
_local = threading.local()
_state: dict[str, object] = {}  # "ops" (torch.ops.mesm or None) and "reason" once loaded


class SparseEngineError(MissingDependencyError):
    """The compiled engine was required (``MESM_SPARSE_ENGINE=compiled``) but is unavailable."""


@dataclass(frozen=True)
class EngineInfo:
    """The engine sparse ops run on CPU, and why (for the one-line report at start-up)."""

    name: Literal["compiled", "torch"]
    reason: str

    def line(self) -> str:
        return f"sparse engine: {self.name} ({self.reason})"


def requested_engine() -> Engine:
    """The engine asked for: :func:`use_engine`'s, else ``MESM_SPARSE_ENGINE``, else auto."""
    override = getattr(_local, "engine", None)
    if override is not None:
        return override
    value = os.environ.get("MESM_SPARSE_ENGINE", "auto").strip().lower() or "auto"
    if value not in _ENGINES:
        raise UsageError(f"MESM_SPARSE_ENGINE must be one of {', '.join(_ENGINES)}, got {value!r}")
    return value  # type: ignore[return-value]


@contextmanager
def use_engine(engine: Engine) -> Iterator[None]:
    """Runs the sparse ops of this thread on `engine` inside the block."""
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {_ENGINES}, got {engine!r}")
    previous = getattr(_local, "engine", None)
    _local.engine = engine
    try:
        yield
    finally:
        _local.engine = previous


def _cpu_tag() -> str:
    """A short digest of this CPU's instruction-set flags: the engine is compiled for the machine
    it runs on (``-march=native``), so a cache copied to another CPU is never loaded there."""
    flags = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            flags += next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return hashlib.sha256(flags.encode()).hexdigest()[:8]


def cache_dir() -> Path:
    """Where the compiled engine is built: one folder per torch version, Python and CPU."""
    root = os.environ.get("MESM_CACHE_DIR") or os.path.join(Path.home(), ".cache", "mesm")
    tag = f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{_cpu_tag()}"
    return Path(root) / "extensions" / tag.replace("+", "_")


def compiler_available() -> bool:
    """A C++ compiler and ninja are on this machine (what building the engine needs)."""
    cxx = os.environ.get("CXX", "c++")
    return shutil.which(cxx) is not None and shutil.which("ninja") is not None


_CFLAGS = ["-O3", "-march=native", "-fopenmp"]


def _digest() -> str:
    """What the built library depends on: the source, the flags and the torch it links."""
    h = hashlib.sha256(_SOURCE.read_bytes())
    h.update(" ".join([*_CFLAGS, torch.__version__]).encode())
    return h.hexdigest()[:16]


def _cached_build() -> Path | None:
    """The library built from this source, flags and torch, if the cache holds it."""
    build_dir = cache_dir()
    library, stamp = build_dir / f"{_NAME}.so", build_dir / "source.sha256"
    if library.exists() and stamp.exists() and stamp.read_text().strip() == _digest():
        return library
    return None


def _build() -> None:
    """Compiles the extension into the cache (torch's builder, ninja; locked against concurrent
    builds) and stamps the build with its digest."""
    # torch's extension builder warns about CUDA on every CPU-only machine: not our news.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.cpp_extension import load

    build_dir = cache_dir()
    build_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"mesm: building the compiled sparse engine in {build_dir} (once; about a minute)",
        file=sys.stderr,
        flush=True,
    )
    load(
        name=_NAME,
        sources=[str(_SOURCE)],
        extra_cflags=_CFLAGS,
        extra_ldflags=["-fopenmp"],
        build_directory=str(build_dir),
        is_python_module=False,
    )
    stamp = build_dir / "source.sha256"
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(_digest() + "\n")
    tmp.replace(stamp)


def _load() -> object | None:
    with _lock:
        if "ops" in _state:
            return _state["ops"]
        ops, reason = None, ""
        try:
            library = _cached_build()
            if library is None and not compiler_available():
                reason = "no C++ compiler or ninja on this machine"
            else:
                if library is None:
                    _build()  # torch's builder loads what it built
                else:
                    torch.ops.load_library(str(library))  # no compiler, no build system
                from mesm.sparse import compiled

                compiled.register()
                ops, reason = torch.ops.mesm, f"C++/OpenMP, built in {cache_dir()}"
        except Exception as err:  # any build or load failure: fall back, and say why
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            reason = f"the C++ build failed: {first[:200]}"
        _state["ops"], _state["reason"] = ops, reason
        return ops


def compiled_ops(device: torch.device | None = None) -> object | None:
    """``torch.ops.mesm`` when the compiled engine runs for tensors on `device`, else None.

    Raises:
        SparseEngineError: ``compiled`` was requested and the engine cannot be built.
    """
    engine = requested_engine()
    if engine == "torch" or (device is not None and device.type != "cpu"):
        return None
    ops = _load()
    if ops is None and engine == "compiled":
        raise SparseEngineError(f"the compiled sparse engine is unavailable: {_state['reason']}")
    return ops


def engine_info() -> EngineInfo:
    """The engine CPU sparse ops run on now (builds the compiled one if needed)."""
    engine = requested_engine()
    if engine == "torch":
        return EngineInfo("torch", "MESM_SPARSE_ENGINE=torch or use_engine('torch')")
    ops = compiled_ops()
    if ops is None:
        return EngineInfo("torch", f"fallback: {_state['reason']}")
    return EngineInfo("compiled", str(_state["reason"]))


def main() -> None:
    """``python -m mesm.sparse``: builds the engine (install time) and prints which one runs."""
    try:
        info = engine_info()
    except (SparseEngineError, UsageError) as err:
        print(f"mesm: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(info.line())
