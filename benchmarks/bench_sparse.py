"""Wall-clock vs FLOPs of the visual and audio feature extractors: FE2E (dense) vs MESM (sparse).

Times ``Pathway.extract`` (low-level CNN, cross-modal attention + sparse stages, MLP) on one batch
with one set of weights (MESM loads FE2E's state dict, ``strict=False``), forward (eval, no_grad)
and forward+backward (train mode), for MESM at several p on each sparse engine: "torch" (the
pure-PyTorch engine: the engine before the compiled one), "compiled" (the C++ ops) and, forward-only
on CPU and with ``--spconv``, "spconv". Each row gives the time, the time ratio to FE2E, the FLOPs
ratio to FE2E (nominal: every kept site through the full 3x3, attention included; and without the
attention layers), the realised share of the FLOP saving, (1 - time ratio) / (1 - FLOPs ratio),
and the goal check of issue 19: time ratio <= 1 - 0.5 x (1 - FLOPs ratio) (a realised share of at
least 50 %), and <= 1.05 at p = 1.

Inputs are random (faces randn, mel chunks rand >= 0) and the attention is untrained, so the
selection is close to uniform over sites; that is fine for measuring cost.

With ``--precision 32 bf16`` every configuration also runs under bf16 autocast (weights fp32, as
``mesm ... --precision bf16`` runs); ratios are to FE2E at the same precision, and the column
"vs fp32" gives each row's time over the same configuration's fp32 time.

Example:
    python benchmarks/bench_sparse.py --preset paper --frames 16 --chunks 16 --repeats 5
    python benchmarks/bench_sparse.py --precision 32 bf16 --p 0.5 0.7 1.0 --threads 2 \
        --out docs/benchmarks/sparse_extractors.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import cpu, stamp, write_atomic

import mesm.sparse as sparse_ops
from mesm.analysis.flops import pathway_flops
from mesm.models import create_model
from mesm.models.pathways import Pathway
from mesm.sparse import engine_info, spconv_available, use_engine
from mesm.sparse.engine import compiled_ops
from mesm.trained.precision import resolve_precision

GOAL_SHARE = 0.5  # the share of the FLOP saving that must become time saved
GOAL_AT_FULL = 1.05  # p >= 1: at most this time ratio (nothing is pruned)


def goal_ratio(flops_ratio: float, p: float | None) -> float:
    """The largest time ratio to FE2E that meets issue 19's goal for a row."""
    if p is None or p >= 1.0:
        return GOAL_AT_FULL
    return 1.0 - GOAL_SHARE * (1.0 - flops_ratio)


# -- per-op profile (--profile) ------------------------------------------------------------------
# Every aten op of a pass is timed by a dispatch mode, in CPU time of this process (process_time:
# robust to other load on the machine, unlike wall-clock), and booked to the innermost scope the
# benchmark put around a library function (patched here, so the same profile runs on any version of
# the engine) or, outside every scope, to a category named by the op.
_SCOPED = {
    ("mesm.models.attention", "CrossModalAttention.forward"): "attention (score, softmax, top-p)",
    ("mesm.models.layers", "MLP.forward"): "MLP",
    ("torch.nn", "MaxPool2d.forward"): "pooling",
    ("mesm.models.layers", "sparse_max_pool2x2"): "pooling",
    ("torch.nn", "BatchNorm2d.forward"): "batch norm / ReLU",
    ("mesm.models.layers", "sparse_batch_norm"): "batch norm / ReLU",
    ("mesm.sparse", "SparseMap.from_dense"): "dense <-> sparse conversions",
    ("mesm.sparse", "SparseMap.to_dense"): "dense <-> sparse conversions",
    ("mesm.sparse", "SparseMap.index_table"): "gather / rulebook",
    ("mesm.sparse", "SparseMap.neighbor_index"): "gather / rulebook",
}
_BY_OP = {
    "mm": "conv GEMM",
    "addmm": "conv GEMM",
    "_linear_pointwise": "conv GEMM",
    "mkldnn_convolution": "conv GEMM",
    "conv2d": "conv GEMM",
    "linear": "conv GEMM",
    "convolution": "conv GEMM",
    "index_select": "gather / rulebook",
    "cat": "gather / rulebook",
    "index": "gather / rulebook",
    "copy_": "gather / rulebook",
    "relu": "batch norm / ReLU",
    "relu_": "batch norm / ReLU",
    "clamp_min": "batch norm / ReLU",
    "clamp_min_": "batch norm / ReLU",
    "native_batch_norm": "batch norm / ReLU",
    "_native_batch_norm_legit_no_training": "batch norm / ReLU",
}
CATEGORIES = [
    "conv GEMM",
    "gather / rulebook",
    "attention (score, softmax, top-p)",
    "batch norm / ReLU",
    "pooling",
    "dense <-> sparse conversions",
    "MLP",
    "other",
]
_scope: list[str] = []


class _OpTimer(TorchDispatchMode):
    """Sums the CPU time of every aten op per category."""

    def __init__(self) -> None:
        super().__init__()
        self.totals = dict.fromkeys(CATEGORIES, 0.0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.process_time()
        out = func(*args, **(kwargs or {}))
        elapsed = time.process_time() - start
        name = func.overloadpacket.__name__
        category = _scope[-1] if _scope else _BY_OP.get(name, "other")
        self.totals[category] += elapsed
        return out


@contextlib.contextmanager
def _profile_scopes():
    import importlib
    import inspect

    saved = []
    for (module_name, attr), label in _SCOPED.items():
        module = importlib.import_module(module_name)
        owner_name, _, name = attr.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        original = inspect.getattr_static(owner, name)
        is_classmethod = isinstance(original, classmethod)
        inner = original.__func__ if is_classmethod else original

        def wrapped(*a, _inner=inner, _label=label, **k):
            _scope.append(_label)
            try:
                return _inner(*a, **k)
            finally:
                _scope.pop()

        own = name in vars(owner)
        setattr(owner, name, classmethod(wrapped) if is_classmethod else wrapped)
        saved.append((owner, name, original, own))
    try:
        yield
    finally:
        for owner, name, original, own in reversed(saved):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # it was inherited


def profile_ms(fn: Callable, repeats: int) -> dict[str, float]:
    """CPU time per category (ms per pass) of `fn`: the median of each category over `repeats`
    passes."""
    fn()  # warm-up
    passes = []
    with _profile_scopes():
        for _ in range(repeats):
            with _OpTimer() as timer:
                fn()
            passes.append({c: 1000 * t for c, t in timer.totals.items()})
    return {c: statistics.median(p[c] for p in passes) for c in CATEGORIES}


def run_profile(args: argparse.Namespace) -> None:
    """Prints, per pathway, the forward's time per category for FE2E and MESM at each p."""
    device = torch.device(args.device)
    fe2e, mesm, inputs, text_dim = build(args, device)
    g = torch.Generator().manual_seed(2)
    for modality in args.modalities:
        frames = inputs[modality].to(device)
        y = torch.randn(frames.shape[0], text_dim, generator=g).to(device)
        dense, sparse = getattr(fe2e, modality), getattr(mesm, modality)
        columns = {"FE2E": profile_ms(forward_fn(dense, frames, None), args.repeats)}
        for p in args.p:
            set_engine(sparse, p, "torch")
            columns[f"MESM p={p}"] = profile_ms(forward_fn(sparse, frames, y), args.repeats)
        print(f"\n{modality} forward, CPU ms per pass (median of {args.repeats})\n")
        print("| category | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for category in [*CATEGORIES, "total"]:
            cells = [
                sum(col.values()) if category == "total" else col[category]
                for col in columns.values()
            ]
            print(f"| {category} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


@dataclass
class Row:
    modality: str
    mode: str  # "fwd" or "fwd+bwd"
    precision: str  # "32-true", "bf16-mixed", "16-mixed"
    model: str  # "fe2e" or "mesm"
    backend: str
    p: float | None
    ms: float
    time_ratio: float
    flops: int  # of the ops that ran (a dense-masked layer counts its whole map)
    flops_ratio: float  # nominal: every kept site through the full 3x3, attention included
    flops_ratio_no_attention: float
    kept: float  # sites processed by the sparse stages / sites of the dense stages
    vs_fp32: float | None = None  # ms / ms of the same configuration in fp32

    @property
    def goal(self) -> float:
        return goal_ratio(self.flops_ratio, self.p)

    @property
    def share(self) -> float | None:
        """(1 - time ratio) / (1 - FLOPs ratio): the part of the FLOP saving realised in time."""
        saving = 1.0 - self.flops_ratio
        return None if self.model == "fe2e" or saving <= 1e-9 else (1 - self.time_ratio) / saving

    @property
    def goal_ok(self) -> bool:
        return self.model == "fe2e" or self.time_ratio <= self.goal


def machine() -> dict[str, str | int]:
    return {
        "cpu": cpu()[0],
        "cores": os.cpu_count() or 0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_ms(
    runs: list[tuple],
    repeats: int,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Median ms of each run; runs are interleaved (round-robin) so that drift and other load on
    the machine hit every configuration alike. Each run is (prepare, fn, ...): prepare() sets the
    shared model up for it (p, engine, layout) and is not timed. `clock` is wall-clock by default;
    ``time.process_time`` (this process's CPU time) is steadier on a machine others load."""
    times: list[list[float]] = [[] for _ in runs]
    for i in range(warmup + repeats):
        for j, (prepare, fn, *_) in enumerate(runs):
            prepare()
            _sync(device)
            start = clock()
            fn()
            _sync(device)
            if i >= warmup:
                times[j].append(1000 * (clock() - start))
    return [statistics.median(t) for t in times]


def set_engine(pathway: Pathway, p: float, backend: str) -> None:
    """`backend` is an engine row's name: "torch" or "compiled" (mesm's engines) or "spconv"."""
    pathway.backend = "spconv" if backend == "spconv" else "torch"
    for layer in pathway.attention:  # they share one NucleusMass: the first sets them all
        layer.nucleus.value = p


def on_engine(fn: Callable, backend: str) -> Callable:
    """`fn` run on the named engine (the spconv rows run mesm's default engine around spconv)."""
    engine = backend if backend in ("torch", "compiled") else "auto"

    def run() -> None:
        with use_engine(engine):
            fn()

    return run


def forward_fn(
    pathway: Pathway, frames: torch.Tensor, y: torch.Tensor | None, precision=None
) -> Callable:
    autocast = precision.autocast if precision is not None else contextlib.nullcontext

    def run() -> None:
        pathway.eval()
        with torch.inference_mode(), autocast():  # as mesm's inference entry points run
            pathway.extract(frames, y)

    return run


def backward_fn(
    pathway: Pathway, frames: torch.Tensor, y: torch.Tensor | None, precision=None
) -> Callable:
    autocast = precision.autocast if precision is not None else contextlib.nullcontext

    def run() -> None:
        pathway.train()
        pathway.zero_grad(set_to_none=True)
        with autocast():
            out = pathway.extract(frames, y)
        out.float().square().mean().backward()

    return run


def kept_fraction(flops) -> float:
    if not flops.sites:
        return 1.0
    return sum(a for a, _ in flops.sites.values()) / sum(b for _, b in flops.sites.values())


def build(args: argparse.Namespace, device: torch.device):
    """FE2E and MESM with one set of weights, random inputs and the text width."""
    torch.manual_seed(0)
    common = dict(preset=args.preset, text_pretrained=False)
    fe2e = create_model("fe2e", **common).to(device)
    mesm = create_model("mesm", p=1.0, **common).to(device)
    missing = mesm.load_state_dict(fe2e.state_dict(), strict=False).missing_keys
    assert all(".attention." in k for k in missing), missing
    cfg = fe2e.config
    g = torch.Generator().manual_seed(1)
    inputs = {
        "visual": torch.randn(
            args.batch * args.frames, cfg.face_channels, cfg.face_size, cfg.face_size, generator=g
        ),
        "audio": torch.rand(args.batch * args.chunks, 1, *cfg.spec_shape, generator=g),
    }
    return fe2e, mesm, inputs, mesm.text.hidden_size


def run(args: argparse.Namespace) -> tuple[list[Row], dict]:
    device = torch.device(args.device)
    fe2e, mesm, inputs, text_dim = build(args, device)
    g = torch.Generator().manual_seed(2)
    precisions = [resolve_precision(name, device) for name in args.precision]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    backends = ["torch", "compiled"] if compiled_ops() is not None else ["torch"]
    if args.spconv and spconv_available():
        backends.append("spconv")
    rows: list[Row] = []
    for modality in args.modalities:
        frames = inputs[modality].to(device)
        y = torch.randn(frames.shape[0], text_dim, generator=g).to(device)
        dense: Pathway = getattr(fe2e, modality)
        sparse: Pathway = getattr(mesm, modality)
        # FE2E in both layouts: the goal is measured against the faster one.
        configs = [("fe2e", "dense NCHW", None), ("fe2e", "dense channels-last", None)]
        configs += [("mesm", b, p) for b in backends for p in args.p]
        for mode in args.modes:
            runs = []  # (prepare, callable, precision, model, backend, p, flops, nominal flops)
            base_flops = {}
            for precision in precisions:
                with precision.autocast():
                    base_flops[precision.lightning] = pathway_flops(dense.eval(), frames)
                for model, backend, p in configs:
                    if mode == "fwd+bwd" and backend == "spconv" and device.type == "cpu":
                        continue  # spconv 2.3's CPU build has no working backward
                    if backend == "spconv" and precision.dtype is not None:
                        continue  # spconv under autocast: not supported by us, never measured
                    make = forward_fn if mode == "fwd" else backward_fn
                    if model == "fe2e":
                        layout = backend.endswith("channels-last")
                        prepare = partial(setattr, dense.low_level, "channels_last", layout)
                        flops = nominal = base_flops[precision.lightning]
                        fn = make(dense, frames, None, precision)
                    else:
                        prepare = partial(set_engine, sparse, p, backend)
                        prepare()
                        with precision.autocast(), use_engine("torch"):
                            flops = pathway_flops(sparse.eval(), frames, y)
                            # Nominal: every kept site through the full 3x3 (no dense fallback).
                            with sparse_ops.dense_above(float("inf")):
                                nominal = pathway_flops(sparse.eval(), frames, y)
                        fn = on_engine(make(sparse, frames, y, precision), backend)
                    runs.append(
                        (prepare, fn, precision.lightning, model, backend, p, flops, nominal)
                    )
            times = interleaved_ms(runs, args.repeats, args.warmup, device, clock)
            dense.low_level.channels_last = True
            base_ms: dict[str, float] = {}
            fp32_ms = {}
            for run_, ms in zip(runs, times, strict=True):
                prec, model = run_[2], run_[3]
                if model == "fe2e":
                    base_ms[prec] = min(ms, base_ms.get(prec, float("inf")))
                if prec == "32-true":
                    fp32_ms[run_[3:6]] = ms
            for run_, ms in zip(runs, times, strict=True):
                _, _, prec, model, backend, p, flops, nominal = run_
                base = base_flops[prec]
                fp32 = fp32_ms.get((model, backend, p))
                rows.append(
                    Row(
                        modality=modality,
                        mode=mode,
                        precision=prec,
                        model=model,
                        backend=backend,
                        p=p,
                        ms=ms,
                        time_ratio=ms / base_ms[prec],
                        flops=flops.total,
                        flops_ratio=nominal.total / base.total,
                        flops_ratio_no_attention=nominal.features / base.features,
                        kept=kept_fraction(flops),
                        vs_fp32=None if fp32 is None else ms / fp32,
                    )
                )
                print(_row_line(rows[-1]), flush=True)
    return rows, machine()


def _row_line(r: Row) -> str:
    p = "-" if r.p is None else f"{r.p:.1f}"
    goal = "-" if r.model == "fe2e" else ("yes" if r.goal_ok else "**no**")
    precision = {"32-true": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}[r.precision]
    vs_fp32 = "-" if r.vs_fp32 is None else f"{r.vs_fp32:.2f}"
    share = "-" if r.share is None else f"{100 * r.share:.0f} %"
    goal_at = "-" if r.model == "fe2e" else f"{r.goal:.2f}"
    return (
        f"| {r.modality} | {r.mode} | {precision} | {r.model} | {r.backend} | {p} | {r.kept:.2f} | "
        f"{r.ms:.1f} | {vs_fp32} | {r.time_ratio:.2f} | {r.flops_ratio:.2f} | "
        f"{r.flops_ratio_no_attention:.2f} | {share} | {goal_at} | {goal} |"
    )


HEADER = (
    "| pathway | pass | precision | model | engine | p | kept sites | ms | vs fp32 | time / FE2E | "
    "FLOPs / FE2E | FLOPs / FE2E (no attn) | realised share | goal: time <= | goal met |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    parser.add_argument("--batch", type=int, default=1, help="utterances in the batch")
    parser.add_argument("--frames", type=int, default=16, help="faces per utterance")
    parser.add_argument("--chunks", type=int, default=16, help="mel chunks per utterance")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--p", type=float, nargs="+", default=[0.5, 0.7, 1.0])
    parser.add_argument(
        "--modalities", nargs="+", choices=["visual", "audio"], default=["visual", "audio"]
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["fwd", "fwd+bwd"], default=["fwd", "fwd+bwd"]
    )
    parser.add_argument("--spconv", action="store_true", help="also time the spconv engine")
    parser.add_argument(
        "--dense-above",
        type=float,
        default=None,
        help="active fraction at which the torch engine's conv runs dense-masked "
        "(default: the engine's; inf = always gather + GEMM)",
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["32", "bf16"],
        help="precisions to time (32, bf16, 16-mixed on CUDA, auto); ratios are within each",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall-clock, or this process's CPU time (steadier on a shared machine; with one "
        "thread it equals the busy time of that core)",
    )
    parser.add_argument("--json", help="also write the rows and the machine to this file")
    parser.add_argument("--out", help="also write the stamped table (markdown) to this file")
    parser.add_argument(
        "--profile", action="store_true", help="print the per-category profile and exit"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        print(
            f"machine: {machine()}; preset {args.preset}, {args.frames} faces, {args.chunks} chunks"
        )
        run_profile(args)
        return
    clock = "wall-clock" if args.clock == "wall" else "CPU time of this process"
    head = stamp(
        f"{engine_info().line()}; device {args.device}; preset {args.preset}, batch {args.batch} "
        f"x ({args.frames} faces, {args.chunks} mel chunks); median of {args.repeats} "
        f"interleaved runs; {clock}"
    )
    if args.dense_above is not None:
        head += f" (convs dense-masked above an active fraction of {args.dense_above})"
    print(head + "\n\n" + HEADER, flush=True)
    with (
        sparse_ops.dense_above(args.dense_above)
        if args.dense_above is not None
        else (contextlib.nullcontext())
    ):
        rows, info = run(args)
    table = head + "\n\n" + HEADER + "\n" + "\n".join(_row_line(r) for r in rows) + "\n"
    print("\n" + table)
    if args.out:
        write_atomic(args.out, table)
    if args.json:
        write_atomic(
            args.json,
            json.dumps(
                {
                    "machine": info,
                    "args": vars(args),
                    "rows": [asdict(r) | {"goal_ok": r.goal_ok} for r in rows],
                },
                indent=1,
            ),
        )


if __name__ == "__main__":
    main()
