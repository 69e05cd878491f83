"""Wall-clock and dispatched ops of one whole training step: FE2E vs MESM, engine before and after.

One step is what ``mesm train`` runs per batch: the model's forward on a batch (text encoder,
visual and audio pathways, fusion), the BCE loss with per-class positive weights
(``EmotionModule._loss``), backward, and the Adam step of ``EmotionModule.configure_optimizers``
(then ``zero_grad``). Under bf16 the forward and the loss run in ``torch.autocast`` with fp32
weights, as Lightning's ``bf16-mixed`` does. MESM loads FE2E's weights (``strict=False``), so both
start from the same network; each model has its own optimiser.

Rows: FE2E; MESM on the pure-PyTorch sparse engine (``torch``: the engine before the compiled
one); MESM on the compiled engine. Runs are interleaved round-robin. "ops" counts the aten and
custom ops one step dispatches (a ``TorchDispatchMode`` around the whole step). Goals (issue 19):
MESM's step time <= FE2E's, and its ops <= 1.2 x FE2E's.

The batch is random: 8 utterances of 24 tokens, with 5 faces (48x48) and 6 mel chunks (128x32)
each. The text encoder is MiniLM-L6's architecture, randomly initialised (same compute as the
pretrained one).

Example:
    python benchmarks/bench_train_step.py --presets tiny paper --precision 32 bf16 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import stamp, write_atomic

from mesm.models import create_model
from mesm.sparse.engine import engine_info, use_engine
from mesm.training.module import EmotionModule

OPS_GOAL = 1.2


class _OpCount(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def make_batch(args: argparse.Namespace, vocab: int, num_classes: int) -> dict:
    g = torch.Generator().manual_seed(1)
    b = args.batch
    return {
        "text_ids": torch.randint(1000, vocab, (b, args.tokens), generator=g),
        "text_mask": torch.ones(b, args.tokens, dtype=torch.long),
        "faces": torch.randn(b * args.faces, 3, 48, 48, generator=g),
        "face_lengths": torch.full((b,), args.faces, dtype=torch.long),
        "specs": torch.rand(b * args.chunks, 1, 128, 32, generator=g),
        "spec_lengths": torch.full((b,), args.chunks, dtype=torch.long),
        "labels": torch.randint(0, 2, (b, num_classes), generator=g).float(),
    }


def make_step(module: EmotionModule, batch: dict, bf16: bool) -> Callable[[], None]:
    optimizer = module.configure_optimizers()
    module.train()

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = module._loss(module(batch), batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


@dataclass
class Row:
    preset: str
    precision: str
    model: str
    ms: float
    ops: int
    time_ratio: float = 1.0
    ops_ratio: float = 1.0

    def line(self) -> str:
        fe2e = self.model == "FE2E"
        goal = "-" if fe2e else ("yes" if self.time_ratio <= 1.0 else "**no**")
        ops_goal = "-" if fe2e else ("yes" if self.ops_ratio <= OPS_GOAL else "**no**")
        return (
            f"| {self.preset} | {self.precision} | {self.model} | {self.ms:.0f} | "
            f"{self.time_ratio:.2f} | {goal} | {self.ops} | {self.ops_ratio:.2f} | {ops_goal} |"
        )


HEADER = (
    "| preset | precision | model (sparse engine) | ms / step | time / FE2E | goal: <= 1.00 | "
    "ops / step | ops / FE2E | goal: <= 1.2 |\n|---|---|---|---|---|---|---|---|---|"
)


def run_preset(preset: str, bf16: bool, args: argparse.Namespace) -> list[Row]:
    torch.manual_seed(0)
    common = dict(preset=preset, text_pretrained=False, p=args.p)
    fe2e = create_model("fe2e", **common)
    mesm = create_model("mesm", **common)
    missing = mesm.load_state_dict(fe2e.state_dict(), strict=False).missing_keys
    assert all(".attention." in k for k in missing), missing
    batch = make_batch(args, fe2e.text.vocab_size, fe2e.config.num_classes)
    pos_weight = torch.full((fe2e.config.num_classes,), 2.0)

    def module(model) -> EmotionModule:
        return EmotionModule(
            model, label_names=list("abcdef"), task="multi_label", pos_weight=pos_weight
        )

    mesm_step = make_step(module(mesm), batch, bf16)  # one model and optimiser, two engines
    configs = [
        ("FE2E", make_step(module(fe2e), batch, bf16), "torch"),
        ("MESM (torch)", mesm_step, "torch"),
        ("MESM (compiled)", mesm_step, "compiled"),
    ]
    precision = "bf16" if bf16 else "fp32"
    times: list[list[float]] = [[] for _ in configs]
    ops = []
    for _, step, engine in configs:
        with use_engine(engine):
            step()  # warm-up (and the optimiser state)
            counter = _OpCount()
            with counter:
                step()
            ops.append(counter.count)
    for i in range(args.warmup + args.repeats):
        for j, (_, step, engine) in enumerate(configs):
            with use_engine(engine):
                start = time.perf_counter()
                step()
                elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times[j].append(1000 * elapsed)
    rows = [
        Row(preset, precision, name, statistics.median(t), n)
        for (name, _, _), t, n in zip(configs, times, ops, strict=True)
    ]
    for row in rows:
        row.time_ratio = row.ms / rows[0].ms
        row.ops_ratio = row.ops / rows[0].ops
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", nargs="+", choices=["tiny", "paper"], default=["tiny", "paper"]
    )
    parser.add_argument("--precision", nargs="+", choices=["32", "bf16"], default=["32", "bf16"])
    parser.add_argument("--p", type=float, default=0.7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--faces", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = engine_info()
    head = stamp(f"{info.line()}; p = {args.p}; median of {args.repeats} interleaved steps")
    print(head + "\n\n" + HEADER, flush=True)
    rows = []
    for preset in args.presets:
        for precision in args.precision:
            for row in run_preset(preset, precision == "bf16", args):
                rows.append(row)
                print(row.line(), flush=True)
    table = head + "\n\n" + HEADER + "\n" + "\n".join(r.line() for r in rows) + "\n"
    if args.out:
        write_atomic(args.out, table)
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
