"""Wall-clock vs FLOPs of the visual and audio feature extractors: FE2E (dense) vs MESM (sparse).

Times ``Pathway.extract`` (low-level CNN, cross-modal attention + sparse stages, MLP) on one batch
with one set of weights (MESM loads FE2E's state dict, ``strict=False``), forward (eval, no_grad)
and forward+backward (train mode), for MESM at several p with the "torch" engine and, forward-only
on CPU, the "spconv" engine. Each row gives the time, the time ratio to FE2E, the FLOPs ratio to
FE2E (with and without the attention layers) and the goal check: time ratio <= 1.15 x FLOPs ratio.
With ``--precision 32 bf16`` every configuration also runs under bf16 autocast (weights fp32, as
``mesm ... --precision bf16`` runs); ratios are to FE2E at the same precision, and the column
"vs fp32" gives each row's time over the same configuration's fp32 time.

Inputs are random (faces randn, mel chunks rand >= 0) and the attention is untrained, so the
selection is close to uniform over sites; that is fine for measuring cost.

Example:
    python benchmarks/bench_sparse.py --preset paper --frames 16 --chunks 16 --repeats 5
    python benchmarks/bench_sparse.py --precision 32 bf16 --no-spconv --threads 2
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

import torch

import mesm.sparse as sparse_ops
from mesm.analysis.flops import pathway_flops
from mesm.models import create_model
from mesm.models.pathways import Pathway
from mesm.sparse import spconv_available
from mesm.training.precision import resolve_precision

GOAL = 1.15

# -- per-op profile (--profile) ------------------------------------------------------------------
# Scopes put around the library's functions while profiling (patched here, so the same profile
# runs on any version of the engine); aten ops outside every scope are sorted by their name.
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
    "aten::mm": "conv GEMM",
    "aten::addmm": "conv GEMM",
    "aten::mkldnn_convolution": "conv GEMM",
    "aten::convolution": "conv GEMM",
    "aten::index_select": "gather / rulebook",
    "aten::cat": "gather / rulebook",
    "aten::index": "gather / rulebook",
    "aten::relu": "batch norm / ReLU",
    "aten::relu_": "batch norm / ReLU",
    "aten::clamp_min": "batch norm / ReLU",
    "aten::clamp_min_": "batch norm / ReLU",
    "aten::native_batch_norm": "batch norm / ReLU",
    "aten::_native_batch_norm_legit_no_training": "batch norm / ReLU",
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
            with torch.profiler.record_function(f"mesm::{_label}"):
                return _inner(*a, **k)

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


def _category(event) -> str | None:
    if event.name.startswith("mesm::"):
        return None  # a scope itself: its children carry the time
    node = event.cpu_parent
    while node is not None:
        if node.name.startswith("mesm::"):
            return node.name.removeprefix("mesm::")
        node = node.cpu_parent
    return _BY_OP.get(event.name, "other")


def profile_ms(fn: Callable, repeats: int) -> dict[str, float]:
    """Self CPU time per category (ms per pass) of `fn`, over `repeats` profiled passes."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm-up
    with _profile_scopes(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.events():
        category = _category(event)
        if category is not None:
            totals[category] += event.self_cpu_time_total / 1000 / repeats
    return totals


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
        print(f"\n{modality} forward, ms per pass (self CPU time, torch.profiler)\n")
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
    flops: int
    flops_ratio: float
    flops_ratio_no_attention: float
    kept: float  # sites processed by the sparse stages / sites of the dense stages
    vs_fp32: float | None = None  # ms / ms of the same configuration in fp32

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
    sparse: Pathway,
    runs: list[tuple],
    repeats: int,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Median ms of each run; runs are interleaved (round-robin) so that drift and other load on
    the machine hit every configuration alike. `clock` is wall-clock by default;
    ``time.process_time`` (this process's CPU time) is steadier on a machine others load."""
    times: list[list[float]] = [[] for _ in runs]
    for i in range(warmup + repeats):
        for j, (_, model, backend, p, _, fn) in enumerate(runs):
            if model == "mesm":
                set_engine(sparse, p, backend)
            _sync(device)
            start = clock()
            fn()
            _sync(device)
            if i >= warmup:
                times[j].append(1000 * (clock() - start))
    return [statistics.median(t) for t in times]


def set_engine(pathway: Pathway, p: float, backend: str) -> None:
    pathway.backend = backend
    for layer in pathway.attention:
        layer.p = p


def forward_fn(
    pathway: Pathway, frames: torch.Tensor, y: torch.Tensor | None, precision
) -> Callable:
    def run() -> None:
        pathway.eval()
        with torch.no_grad(), precision.autocast():
            pathway.extract(frames, y)

    return run


def backward_fn(
    pathway: Pathway, frames: torch.Tensor, y: torch.Tensor | None, precision
) -> Callable:
    def run() -> None:
        pathway.train()
        pathway.zero_grad(set_to_none=True)
        with precision.autocast():
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
            args.frames, cfg.face_channels, cfg.face_size, cfg.face_size, generator=g
        ),
        "audio": torch.rand(args.chunks, 1, *cfg.spec_shape, generator=g),
    }
    return fe2e, mesm, inputs, mesm.text.hidden_size


def run(args: argparse.Namespace) -> tuple[list[Row], dict]:
    device = torch.device(args.device)
    fe2e, mesm, inputs, text_dim = build(args, device)
    g = torch.Generator().manual_seed(2)
    precisions = [resolve_precision(name, device) for name in args.precision]
    backends = ["torch"]
    if not args.no_spconv and spconv_available():
        backends.append("spconv")
    rows: list[Row] = []
    for modality in args.modalities:
        frames = inputs[modality].to(device)
        y = torch.randn(frames.shape[0], text_dim, generator=g).to(device)
        dense: Pathway = getattr(fe2e, modality)
        sparse: Pathway = getattr(mesm, modality)
        configs = [("fe2e", "dense", None)]
        configs += [("mesm", b, p) for b in backends for p in args.p]
        for mode in args.modes:
            runs = []  # (precision, model, backend, p, flops, callable)
            base_flops = {}
            for precision in precisions:
                with precision.autocast():
                    base_flops[precision.lightning] = pathway_flops(dense.eval(), frames)
                for model, backend, p in configs:
                    if mode == "fwd+bwd" and backend == "spconv" and device.type == "cpu":
                        continue  # spconv 2.3's CPU build has no working backward
                    if backend == "spconv" and precision.dtype is not None:
                        continue  # spconv under autocast: not supported by us, never measured
                    if model == "fe2e":
                        pathway, y_in, flops = dense, None, base_flops[precision.lightning]
                    else:
                        pathway, y_in = sparse, y
                        set_engine(pathway, p, backend)
                        with precision.autocast():
                            flops = pathway_flops(pathway.eval(), frames, y_in)
                    make = forward_fn if mode == "fwd" else backward_fn
                    fn = make(pathway, frames, y_in, precision)
                    runs.append((precision.lightning, model, backend, p, flops, fn))
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            times = interleaved_ms(sparse, runs, args.repeats, args.warmup, device, clock)
            base_ms = {r[0]: ms for r, ms in zip(runs, times, strict=True) if r[1] == "fe2e"}
            fp32_ms = {r[1:4]: ms for r, ms in zip(runs, times, strict=True) if r[0] == "32-true"}
            for (prec, model, backend, p, flops, _), ms in zip(runs, times, strict=True):
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
                        flops_ratio=flops.total / base.total,
                        flops_ratio_no_attention=flops.features / base.features,
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
    return (
        f"| {r.modality} | {r.mode} | {precision} | {r.model} | {r.backend} | {p} | {r.kept:.2f} | "
        f"{r.ms:.1f} | {vs_fp32} | {r.time_ratio:.2f} | {r.flops_ratio:.2f} | "
        f"{r.flops_ratio_no_attention:.2f} | {r.flops_ratio * GOAL:.2f} | {goal} |"
    )


HEADER = (
    "| pathway | pass | precision | model | engine | p | kept sites | ms | vs fp32 | time / FE2E | "
    "FLOPs / FE2E | FLOPs / FE2E (no attn) | goal: time <= | goal met |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    parser.add_argument("--frames", type=int, default=16, help="faces in the batch (all utts)")
    parser.add_argument("--chunks", type=int, default=16, help="mel chunks in the batch")
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
        "--precision",
        nargs="+",
        default=["32"],
        help="precisions to time (32, bf16, 16-mixed on CUDA, auto); ratios are within each",
    )
    parser.add_argument(
        "--dense-above",
        type=float,
        default=None,
        help="active fraction at which the torch engine's conv runs dense-masked "
        "(default: the engine's; inf = always gather + GEMM)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall-clock, or this process's CPU time (steadier on a shared machine; with one "
        "thread it equals the busy time of that core)",
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
        f"{info['threads']} threads, device {args.device}; preset {args.preset}, "
        f"{args.frames} faces, {args.chunks} mel chunks, median of {args.repeats} interleaved "
        f"runs ({args.clock} clock), "
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
