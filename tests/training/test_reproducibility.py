"""Same seed, same run: two tiny trainings with one seed end with identical weights and metrics;
another seed ends elsewhere. The first run fills the feature cache and the others find it full,
which once shifted the random stream of the first run (building the face detector drew from it)."""

from __future__ import annotations

import json

import pytest

from mesm.demo.synthetic import write_synthetic_dataset
from mesm.models import TINY_TEXT
from mesm.trained.checkpoint import load_checkpoint
from mesm.training.config import RunConfig
from mesm.training.fit import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    data = root / "data"
    write_synthetic_dataset(data, 8, duration=(1.0, 1.2))

    def run(name: str, seed: int):
        config = RunConfig.from_dict(
            {
                "model": {"preset": "tiny", "arch": "mesm", "gating": "gated", **TINY_TEXT},
                "data": {"path": str(data), "batch_size": 3, "shuffle": True},
                "optim": {"lr": 1e-3},
                "trainer": {"max_epochs": 1, "seed": seed, "precision": "32"},
            }
        )
        result = train(config, root / name, enable_progress_bar=False)
        model, _ = load_checkpoint(result.checkpoint)
        metrics = json.loads((root / name / "metrics.json").read_text())
        return model.state_dict(), metrics

    return {"a": run("a", 0), "b": run("b", 0), "other": run("other", 1)}


def _largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_the_same_seed_gives_the_same_weights_and_metrics(runs):
    (weights_a, metrics_a), (weights_b, metrics_b) = runs["a"], runs["b"]
    # Equal up to float rounding: the two runs take the same steps on the same batches, but CPU
    # kernels may round differently from one process state to the next (seen in a 2-epoch run
    # whose first run filled the cache: largest difference 1.5e-8; bitwise equal when both
    # runs found the cache full). A generator shifted by even one draw gives other initial
    # weights, far beyond this bound.
    assert _largest_difference(weights_a, weights_b) < 1e-6
    assert metrics_a == metrics_b  # the same best epoch, decisions and scores


def test_another_seed_gives_other_weights(runs):
    (weights_a, _), (weights_other, _) = runs["a"], runs["other"]
    assert _largest_difference(weights_a, weights_other) > 1e-3
