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
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mesm.errors import ConfigError
from mesm.files import atomic_write_text
from mesm.models import BASELINE_ARCHS, BaselineConfig, ModelConfig, config_from_dict


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
    # auto | 32 | bf16 | 16-mixed (or Lightning's names): see mesm.inference.precision.
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
            raise ConfigError(f"unknown config sections: {unknown}")
        sections = {}
        for name, kind in (
            ("data", DataConfig),
            ("optim", OptimConfig),
            ("trainer", TrainerConfig),
        ):
            values = d.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"section {name!r} must be a mapping, got {values!r}")
            known = {f.name for f in dataclasses.fields(kind)}
            bad = sorted(set(values) - known)
            if bad:
                raise ConfigError(f"unknown keys in section {name!r}: {bad}")
            values = _coerce_numbers(kind, values)
            check_types(name, kind, values)
            sections[name] = kind(**values)
        model = d.get("model") or {}
        if not isinstance(model, dict):
            raise ConfigError(f"section 'model' must be a mapping, got {model!r}")
        kind = BaselineConfig if model.get("arch") in BASELINE_ARCHS else ModelConfig
        model = _coerce_numbers(kind, model)
        check_types("model", kind, model)
        config = cls(model=model, **sections)
        config.model_config()  # validate the model section now, not at training time
        return config


def _coerce_numbers(kind: type, values: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads "5e-5" (no dot) and "nan" as strings: read them as numbers where the field
    # is one (a non-finite result is then refused by `check_types`).
    hints = typing.get_type_hints(kind)
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, str) and hints.get(key) in (float, int):
            try:
                out[key] = float(value) if hints[key] is float else int(value)
            except ValueError:
                raise ConfigError(f"{kind.__name__}.{key}: {value!r} is not a number") from None
    return out


def check_types(section: str, kind: type, values: dict[str, Any]) -> None:
    """Checks `values` against the field types of dataclass `kind` (unknown keys are skipped:
    the dataclass reports those itself).

    Floats must be finite; ints are accepted where a float is expected, never bools.

    Raises:
        ConfigError: naming ``section.field``, what it expects and what it got.
    """
    hints = typing.get_type_hints(kind)
    for key, value in values.items():
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"{section}.{key}: expected {_describe(hints[key])}, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint is float:
        return "a finite number"
    if hint is type(None):
        return "null"
    return {int: "an integer", bool: "true or false", str: "a string"}.get(
        hint, getattr(origin or hint, "__name__", str(hint))
    )


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``a.b=c`` strings (values parsed as YAML) to a nested dict, returning a copy."""
    out = yaml.safe_load(yaml.safe_dump(d))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
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
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the run config ({err.strerror})") from None
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"
            ) from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a run config must be a mapping of sections")
    try:
        return RunConfig.from_dict(apply_overrides(raw, overrides or []))
    except (TypeError, ValueError) as err:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{err}") from None


def save_run_config(config: RunConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
