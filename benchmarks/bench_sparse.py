"""Wall-clock vs FLOPs of the visual and audio feature extractors: FE2E (dense) vs MESM (sparse).

Times ``Pathway.extract`` (low-level CNN, cross-modal attention + sparse stages, MLP) on one batch
with one set of weights (MESM loads FE2E's state dict, ``strict=False``), forward (eval, no_grad)
and forward+backward (train mode), for MESM at several p with the "torch" engine and, forward-only
on CPU, the "spconv" engine. Each row gives the time, the time ratio to FE2E, the FLOPs ratio to
FE2E (with and without the attention layers) and the goal check: time ratio <= 1.15 x FLOPs ratio.

Inputs are random (faces randn, mel chunks rand >= 0) and the attention is untrained, so the
selection is close to uniform over sites; that is fine for measuring cost.

Example:
    python benchmarks/bench_sparse.py --preset paper --frames 16 --chunks 16 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mesm.sparse as sparse_ops
from mesm.analysis.flops import pathway_flops
from mesm.models import create_model
from mesm.models.pathways import Pathway
from mesm.sparse import spconv_available

GOAL = 1.15

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
    model: str  # "fe2e" or "mesm"
    backend: str
    p: float | None
    ms: float
    time_ratio: float
    flops: int  # of the ops that ran (a dense-masked layer counts its whole map)
    flops_ratio: float  # nominal: every kept site through the full 3x3, attention included
    flops_ratio_no_attention: float
    kept: float  # sites processed by the sparse stages / sites of the dense stages

    @property
    def goal_ok(self) -> bool:
        return self.model == "fe2e" or self.time_ratio <= GOAL * self.flops_ratio


def machine() -> dict[str, str | int]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_ms(
    runs: list[tuple], repeats: int, warmup: int, device: torch.device
) -> list[float]:
    """Median ms of each run; runs are interleaved (round-robin) so that drift and other load on
    the machine hit every configuration alike. Each run is (prepare, fn, ...): prepare() sets the
    shared model up for it (p, engine, layout) and is not timed."""
    times: list[list[float]] = [[] for _ in runs]
    for i in range(warmup + repeats):
        for j, (prepare, fn, *_) in enumerate(runs):
            prepare()
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[j].append(1000 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


def set_engine(pathway: Pathway, p: float, backend: str) -> None:
    pathway.backend = backend
    for layer in pathway.attention:
        layer.p = p


def forward_fn(pathway: Pathway, frames: torch.Tensor, y: torch.Tensor | None) -> Callable:
    def run() -> None:
        pathway.eval()
        with torch.inference_mode():  # as mesm's inference entry points run
            pathway.extract(frames, y)

    return run


def backward_fn(pathway: Pathway, frames: torch.Tensor, y: torch.Tensor | None) -> Callable:
    def run() -> None:
        pathway.train()
        pathway.zero_grad(set_to_none=True)
        pathway.extract(frames, y).square().mean().backward()

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
    backends = ["torch"]
    if not args.no_spconv and spconv_available():
        backends.append("spconv")
    rows: list[Row] = []
    for modality in args.modalities:
        frames = inputs[modality].to(device)
        y = torch.randn(frames.shape[0], text_dim, generator=g).to(device)
        dense: Pathway = getattr(fe2e, modality)
        sparse: Pathway = getattr(mesm, modality)
        base_flops = pathway_flops(dense.eval(), frames)
        # FE2E in both layouts: the goal is measured against the faster one.
        configs = [("fe2e", "dense NCHW", None), ("fe2e", "dense channels-last", None)]
        configs += [("mesm", b, p) for b in backends for p in args.p]
        for mode in args.modes:
            runs = []  # (prepare, callable, model, backend, p, flops, nominal flops)
            for model, backend, p in configs:
                if mode == "fwd+bwd" and backend == "spconv" and device.type == "cpu":
                    continue  # spconv 2.3's CPU build has no working backward
                make = forward_fn if mode == "fwd" else backward_fn
                if model == "fe2e":
                    layout = backend.endswith("channels-last")
                    prepare = partial(setattr, dense.low_level, "channels_last", layout)
                    fn, flops, nominal = make(dense, frames, None), base_flops, base_flops
                else:
                    prepare = partial(set_engine, sparse, p, backend)
                    prepare()
                    flops = pathway_flops(sparse.eval(), frames, y)
                    # Nominal: every kept site through the full 3x3 (no dense fallback).
                    with sparse_ops.dense_above(float("inf")):
                        nominal = pathway_flops(sparse.eval(), frames, y)
                    fn = make(sparse, frames, y)
                runs.append((prepare, fn, model, backend, p, flops, nominal))
            times = interleaved_ms(runs, args.repeats, args.warmup, device)
            dense.low_level.channels_last = True
            base_ms = min(ms for ms, run in zip(times, runs, strict=True) if run[2] == "fe2e")
            for (_, _, model, backend, p, flops, nominal), ms in zip(runs, times, strict=True):
                rows.append(
                    Row(
                        modality=modality,
                        mode=mode,
                        model=model,
                        backend=backend,
                        p=p,
                        ms=ms,
                        time_ratio=ms / base_ms,
                        flops=flops.total,
                        flops_ratio=nominal.total / base_flops.total,
                        flops_ratio_no_attention=nominal.features / base_flops.features,
                        kept=kept_fraction(flops),
                    )
                )
                print(_row_line(rows[-1]), flush=True)
    return rows, machine()


def _row_line(r: Row) -> str:
    p = "-" if r.p is None else f"{r.p:.1f}"
    goal = "-" if r.model == "fe2e" else ("yes" if r.goal_ok else "**no**")
    return (
        f"| {r.modality} | {r.mode} | {r.model} | {r.backend} | {p} | {r.kept:.2f} | {r.ms:.1f} | "
        f"{r.time_ratio:.2f} | {r.flops_ratio:.2f} | {r.flops_ratio_no_attention:.2f} | "
        f"{r.flops_ratio * GOAL:.2f} | {goal} |"
    )


HEADER = (
    "| pathway | pass | model | engine | p | kept sites | ms | time / FE2E | FLOPs / FE2E | "
    "FLOPs / FE2E (no attn) | goal: time <= | goal met |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
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
    parser.add_argument("--p", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9, 1.0])
    parser.add_argument(
        "--modalities", nargs="+", choices=["visual", "audio"], default=["visual", "audio"]
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["fwd", "fwd+bwd"], default=["fwd", "fwd+bwd"]
    )
    parser.add_argument("--no-spconv", action="store_true", help="skip the spconv engine")
    parser.add_argument(
        "--dense-above",
        type=float,
        default=None,
        help="active fraction at which the torch engine's conv runs dense-masked "
        "(default: the engine's; inf = always gather + GEMM)",
    )
    parser.add_argument("--json", help="also write the rows and the machine to this file")
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
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"{info['threads']} threads, device {args.device}; preset {args.preset}, batch "
        f"{args.batch} x ({args.frames} faces, {args.chunks} mel chunks), median of "
        f"{args.repeats} interleaved "
        "runs, "
        f"dense-masked above {getattr(sparse_ops, 'dense_fraction', lambda: '-')()}"
        f"{'' if args.dense_above is None else f' (--dense-above {args.dense_above})'}\n"
    )
    print(HEADER, flush=True)
    if args.dense_above is None or not hasattr(sparse_ops, "dense_above"):
        rows, info = run(args)
    else:
        with sparse_ops.dense_above(args.dense_above):
            rows, info = run(args)
    print("\n" + HEADER)
    for r in rows:
        print(_row_line(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "args": vars(args),
                    "rows": [asdict(r) | {"goal_ok": r.goal_ok} for r in rows],
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
