"""Experiment configuration: typed dataclasses ↔ YAML, with ``--set a.b=c`` overrides.

A run config has four sections::

    model:    any field of mesm.models.ModelConfig (plus `preset`, applied first)
    data:     dataset folder, batch size, workers, text length
    optim:    learning rate, text-encoder factor, weight decay, clipping, scheduler
    trainer:  epochs, early stopping, precision, devices/strategy/nodes, seed, determinism

The resolved config (every default filled in) is written into every run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mesm.models import BaselineConfig, ModelConfig, config_from_dict


@dataclass
class DataConfig:
    """Where the data is and how it is batched."""

    path: str = ""
    batch_size: int = 8
    num_workers: int = 0
    max_text_length: int = 100
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str = "test"
    shuffle: bool = True
    # Fields of mesm.data.cache.PreprocessSettings (frame interval, mel settings, ...) selecting
    # the feature cache; empty = the paper's settings.
    preprocess: dict[str, Any] = field(default_factory=dict)
    # Baselines only: fields of mesm.data.features.FeatureSettings selecting the hand-crafted
    # feature cache (`mesm features`); empty = the defaults.
    features: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Adam with a smaller learning rate for the pretrained text encoder (paper: lr 5e-5, /10)."""

    lr: float = 5e-5
    text_lr_factor: float = 10.0
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    scheduler: Literal["none", "cosine", "plateau"] = "none"


@dataclass
class TrainerConfig:
    """Loop settings handed to Lightning."""

    max_epochs: int = 20
    max_steps: int = -1
    patience: int = 5
    # auto | 32 | bf16 | 16-mixed (or Lightning's names): see mesm.training.precision.
    precision: str = "auto"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    seed: int = 0
    deterministic: bool = False
    sync_batchnorm: bool = False
    log_every_n_steps: int = 10
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0


@dataclass
class RunConfig:
    """A whole experiment."""

    model: dict[str, Any] = field(default_factory=lambda: {"preset": "paper", "arch": "fe2e"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def model_config(self, **extra: Any) -> ModelConfig | BaselineConfig:
        """The validated model config: preset first, then the section's fields, then `extra`
        (a `BaselineConfig` when the arch is a baseline's)."""
        fields = dict(self.model)
        preset = fields.pop("preset", "paper")
        return config_from_dict({**fields, **extra}, preset=preset)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - {"model", "data", "optim", "trainer"})
        if unknown:
            raise ValueError(f"unknown config sections: {unknown}")
        sections = {}
        for name, kind in (
            ("data", DataConfig),
            ("optim", OptimConfig),
            ("trainer", TrainerConfig),
        ):
            values = d.get(name) or {}
            known = {f.name for f in dataclasses.fields(kind)}
            bad = sorted(set(values) - known)
            if bad:
                raise ValueError(f"unknown keys in section {name!r}: {bad}")
            sections[name] = kind(**_coerce_numbers(kind, values))
        config = cls(model=dict(d.get("model") or {}), **sections)
        config.model_config()  # validate the model section now, not at training time
        return config


def _coerce_numbers(kind: type, values: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads "5e-5" (no dot) as a string: accept it where the field is a number.
    types = {f.name: f.type for f in dataclasses.fields(kind)}
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, str) and types.get(key) in ("float", "int"):
            try:
                out[key] = float(value) if types[key] == "float" else int(value)
            except ValueError as err:
                raise ValueError(f"{kind.__name__}.{key}: {value!r} is not a number") from err
    return out


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``a.b=c`` strings (values parsed as YAML) to a nested dict, returning a copy."""
    out = yaml.safe_load(yaml.safe_dump(d))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key.sub=value")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return out


def load_run_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Reads a YAML run config (or the defaults when `path` is None) and applies overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a run config must be a mapping of sections")
    try:
        return RunConfig.from_dict(apply_overrides(raw, overrides or []))
    except (TypeError, ValueError) as err:
        where = f"{path}: " if path else ""
        raise ValueError(f"{where}{err}") from err


def save_run_config(config: RunConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
