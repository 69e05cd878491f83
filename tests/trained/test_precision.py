"""Precision resolution (auto, aliases, errors), the --precision option and a bf16 training run."""

from __future__ import annotations

import csv

import pytest
import torch
from lightning.pytorch import Callback

from mesm.cli import build_parser, main
from mesm.demo.synthetic import write_synthetic_dataset
from mesm.errors import UsageError
from mesm.models import TINY_TEXT
from mesm.trained.precision import autocast, cpu_bf16_flags, resolve_precision
from mesm.training.config import RunConfig
from mesm.training.fit import train

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx512f avx512bw amx_tile amx_bf16 amx_int8\n"
SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n"  # AVX-512 but no bf16 units
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected", "flag"),
    [
        (ZEN4, "bf16-mixed", "avx512_bf16"),
        (SAPPHIRE_RAPIDS, "bf16-mixed", "amx_bf16"),
        (GRAVITON3, "bf16-mixed", "bf16"),
        (SKYLAKE, "32-true", None),
        ("", "32-true", None),
    ],
)
def test_auto_on_cpu_follows_the_bf16_flags(cpuinfo, expected, flag):
    resolved = resolve_precision("auto", "cpu", cpuinfo=cpuinfo)
    assert resolved.lightning == expected
    assert cpu_bf16_flags(cpuinfo) == ([flag] if flag else [])
    line = resolved.describe()
    assert line.startswith("precision: ") and "auto: " in line and "\n" not in line
    assert (flag in line) if flag else ("no bf16" in line)
    assert resolved.dtype == (torch.bfloat16 if flag else None)


@pytest.mark.parametrize(("cuda_bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_on_cuda_picks_bf16_where_supported_else_fp16(cuda_bf16, expected):
    for device in ("cuda", "cuda:1", "gpu"):
        resolved = resolve_precision("auto", device, cuda_bf16=cuda_bf16, cpuinfo=SKYLAKE)
        assert (resolved.lightning, resolved.device_type) == (expected, "cuda")


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("32", "32-true"),
        ("32-true", "32-true"),
        ("bf16", "bf16-mixed"),
        ("BF16-mixed", "bf16-mixed"),
    ],
)
def test_explicit_precisions_ignore_the_cpu(requested, expected):
    for cpuinfo in (ZEN4, SKYLAKE):
        resolved = resolve_precision(requested, "cpu", cpuinfo=cpuinfo)
        assert resolved.lightning == expected and "auto:" not in resolved.describe()


def test_bad_precisions_are_refused_clearly():
    with pytest.raises(UsageError, match="unknown precision '8'"):
        resolve_precision("8")
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        resolve_precision("16-mixed", "cpu")
    assert resolve_precision("16-mixed", "cuda").dtype == torch.float16


def test_autocast_context_follows_the_resolution():
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast("32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16), autocast(None):
        assert torch.is_autocast_enabled("cpu")  # None leaves the caller's context alone


def test_every_inference_command_takes_the_shared_precision_option(capsys):
    parser = build_parser()
    common = ["--checkpoint", "c", "--data", "d"]
    for argv in (
        ["demo"],
        ["evaluate", *common],
        ["predict", "clip.mp4", "--checkpoint", "c"],
        ["flops"],
        ["sweep-p", *common],
        ["explain", "clip.mp4", "--checkpoint", "c", "--out", "o"],
    ):
        assert parser.parse_args(argv).precision == "auto", argv
        assert parser.parse_args([*argv, "--precision", "bf16"]).precision == "bf16"
    assert parser.parse_args(["train", "--out", "r"]).precision is None  # the config decides
    assert main(["flops", "--preset", "tiny", "--precision", "bf16"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "precision: bf16 autocast on cpu (bf16-mixed)"
    assert main(["flops", "--preset", "tiny", "--precision", "fp8"]) == 1
    assert "unknown precision 'fp8'" in capsys.readouterr().err


def test_bf16_training_run_lowers_the_loss(tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset(data, 8, duration=(1.0, 1.2))
    config = RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "arch": "mesm", "p": 0.7, "gating": "gated", **TINY_TEXT},
            # One fixed batch (no shuffling, one batch an epoch): each step fits the same data.
            "data": {"path": str(data), "batch_size": 4, "shuffle": False},
            "optim": {"lr": 2e-3},
            "trainer": {
                "precision": "bf16",
                "max_epochs": 5,
                "patience": 100,
                "limit_train_batches": 1,
                "limit_val_batches": 1,
                "log_every_n_steps": 1,
                "deterministic": True,
            },
        }
    )
    seen: list = []

    class LogitsDtype(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.append(trainer.precision)

        def on_fit_start(self, trainer, module):
            module.model.register_forward_hook(lambda m, a, out: seen.append(out.dtype))

    train(config, tmp_path / "run", enable_progress_bar=False, callbacks=[LogitsDtype()])
    assert "bf16-mixed" in seen and torch.bfloat16 in seen and torch.float32 not in seen
    rows = csv.DictReader((tmp_path / "run" / "logs" / "csv" / "version_0" / "metrics.csv").open())
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 5
    assert losses[-1] < 0.8 * losses[0], losses
