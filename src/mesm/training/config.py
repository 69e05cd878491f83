"""Experiment configuration: typed dataclasses ↔ YAML, with ``--set a.b=c`` overrides.

A run config has four sections::

    model:    any field of mesm.models.ModelConfig (plus `preset`, applied first)
    data:     dataset folder, batch size, workers, text length
    optim:    learning rate, text-encoder factor, weight decay, clipping, scheduler
    trainer:  epochs, early stopping, precision, devices/strategy/nodes, seed, determinism

Every run folder holds the resolved config (``RunConfig.resolved``): every field of every section
with its value, the model section after presets and overrides, so a resume or a reader of the
folder never re-derives it against newer defaults.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mesm.errors import ConfigError
from mesm.files import atomic_write_text
from mesm.models import BASELINE_ARCHS, BaselineConfig, ModelConfig, config_from_dict
from mesm.settings import check_types, settings_from_dict, settings_to_dict


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
    # Fields of mesm.data.media.cache.PreprocessSettings (frame interval, mel settings, ...)
    # selecting the feature cache; empty = the paper's settings.
    preprocess: dict[str, Any] = field(default_factory=dict)
    # Baselines only: fields of mesm.data.handcrafted.features.FeatureSettings selecting the
    # hand-crafted feature cache (`mesm features`); empty = the defaults.
    features: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Adam with a smaller learning rate for the pretrained text encoder (paper: lr 5e-5, /10)."""

    lr: float = 5e-5
    text_lr_factor: float = 10.0
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    scheduler: Literal["none", "cosine", "plateau"] = "none"
    # Modality dropout: {"t"|"a"|"v": q}, each training utterance leaves that modality's logits
    # out of the fusion with probability q (never all of its modalities at once), so the others
    # must carry the emotion alone too. Validation, test and inference always use them all.
    modality_dropout: dict[str, float] = field(default_factory=dict)
    # Per-modality losses: each modality's logits also learn the emotions alone; the training
    # loss is the fused one + modality_loss x their mean (0: the paper's fused loss only).
    modality_loss: float = 0.0

    def __post_init__(self) -> None:
        check_modality_options(self.modality_dropout, self.modality_loss, "tav")


def check_modality_options(dropout: dict[str, float], loss: float, modalities: str | None) -> None:
    """Checks modality dropout rates and the per-modality loss weight against a model.

    Args:
        dropout: {"t"|"a"|"v": q}, each q in [0, 1).
        loss: the per-modality loss weight, >= 0.
        modalities: the model's modalities; None for a baseline (no per-modality logits: the
            options must be off).

    Raises:
        ValueError: naming the option and what is wrong.
    """
    if loss < 0:
        raise ValueError(f"modality_loss must be >= 0, got {loss!r}")
    for m, q in dropout.items():
        if m not in ("t", "a", "v"):
            raise ValueError(f"modality_dropout: unknown modality {m!r} (t, a or v)")
        number = isinstance(q, (int, float)) and not isinstance(q, bool)
        if not number or not 0.0 <= q < 1.0:
            raise ValueError(f"modality_dropout.{m} must be in [0, 1), got {q!r}")
    if modalities is None:
        if loss > 0 or any(q > 0 for q in dropout.values()):
            raise ValueError(
                "modality_dropout / modality_loss: only FE2E and MESM fuse per-modality logits"
            )
        return
    missing = sorted(set(dropout) - set(modalities))
    if missing:
        raise ValueError(
            f"modality_dropout: the model has no modality {missing} (modalities={modalities!r})"
        )


@dataclass
class TrainerConfig:
    """Loop settings handed to Lightning."""

    max_epochs: int = 20
    max_steps: int = -1
    patience: int = 5
    # auto | 32 | bf16 | 16-mixed (or Lightning's names): see mesm.trained.precision.
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
        (a `BaselineConfig` when the arch is a baseline's).

        A resolved section (``preset: null``, as a run folder's config.yaml holds) applies no
        preset: fields it lacks, from a run written by an older mesm, take that version's
        values (:data:`mesm.models.config.LEGACY_FIELDS`), never today's defaults.
        """
        fields = dict(self.model)
        preset = fields.pop("preset", "paper")
        return config_from_dict({**fields, **extra}, preset=preset, saved=preset is None)

    def resolved(self, model: ModelConfig | BaselineConfig) -> RunConfig:
        """This config with its model section replaced by every field of `model` (the config
        after presets, overrides and what the data fixed, e.g. ``num_classes``) and
        ``preset: null``: what a run folder records, so that resuming rebuilds exactly this."""
        return dataclasses.replace(self, model={"preset": None, **model.to_dict()})

    def with_precision(self, precision: str) -> RunConfig:
        """This config with ``trainer.precision`` set (what a run folder records)."""
        return dataclasses.replace(
            self, trainer=dataclasses.replace(self.trainer, precision=precision)
        )

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

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
            sections[name] = settings_from_dict(kind, _coerce_numbers(kind, values), name)
        model = d.get("model") or {}
        if not isinstance(model, dict):
            raise ConfigError(f"section 'model' must be a mapping, got {model!r}")
        kind = BaselineConfig if model.get("arch") in BASELINE_ARCHS else ModelConfig
        model = _coerce_numbers(kind, model)
        check_types("model", kind, model)
        config = cls(model=model, **sections)
        model_config = config.model_config()  # validate the model section now, not at training
        modalities = None if kind is BaselineConfig else model_config.modalities
        try:
            optim = config.optim
            check_modality_options(optim.modality_dropout, optim.modality_loss, modalities)
        except ValueError as err:
            raise ConfigError(f"optim.{err}") from None
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
