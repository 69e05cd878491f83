"""`train`: one run from a :class:`RunConfig` to a run folder.

The run folder holds ``config.yaml`` (the resolved config), ``checkpoints/best.ckpt`` and
``checkpoints/last.ckpt`` (Lightning's, for ``--resume``), ``best.safetensors`` (the model to use:
weights + config + labels + thresholds + preprocessing, loadable without pickle), CSV and
TensorBoard logs under ``logs/{csv,tb}/version_N`` (one version per start or
resume), and ``metrics.json`` (validation and test reports of the best
epoch).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from mesm.errors import CheckpointError, ConfigError, MissingInputError, OutputPathError
from mesm.files import atomic_write_json, make_output_dir
from mesm.models import BASELINE_ARCHS, build_model
from mesm.trained.checkpoint import save_checkpoint
from mesm.trained.precision import Precision, resolve_precision
from mesm.training.config import RunConfig, save_run_config
from mesm.training.module import EmotionModule
from mesm.training.quiet import batch_limits, log_interval, silence_lightning_notices

MONITOR = "val/f1"


@dataclass
class RunResult:
    """What a run left behind."""

    run_dir: Path
    checkpoint: Path
    best_ckpt: Path
    last_ckpt: Path
    metrics: dict[str, Any]


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, but `last.ckpt` is read with torch's weights-only unpickler.

    Lightning passes ``weights_only=None`` on resume, which leaves the choice to torch's default:
    unsafe before torch 2.6 (and wherever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set). Asking for
    ``weights_only=True`` explicitly makes every supported torch refuse a pickle that names
    anything but tensors and plain containers, so a planted ``last.ckpt`` cannot run code.
    """

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        """`torch.load(path, weights_only=True)` whatever the caller asked for."""
        kwargs = {} if map_location is None else {"map_location": map_location}
        try:
            return super().load_checkpoint(path, weights_only=True, **kwargs)
        except pickle.UnpicklingError as err:
            lines = str(err).splitlines()
            why = next((line for line in lines if "Unsupported global" in line), lines[0])
            raise CheckpointError(
                f"{path}: refusing to unpickle a training checkpoint that holds more than "
                f"tensors and plain data ({why.strip()})"
            ) from None


def _datasets(config: RunConfig) -> tuple[Dataset, Dataset, Dataset | None]:
    from mesm.data.media.cache import PreprocessSettings
    from mesm.data.media.dataset import EmotionDataset

    if not config.data.path:
        raise ConfigError("data.path is not set: point it at a prepared dataset folder")
    if config.model.get("arch") in BASELINE_ARCHS:
        return _feature_datasets(config)
    try:
        settings = PreprocessSettings(**config.data.preprocess)
    except TypeError as err:
        raise ConfigError(f"data.preprocess: {err}") from err
    kwargs = {
        "settings": settings,
        "text_model": config.model.get("text_model"),
        "max_text_length": config.data.max_text_length,
    }
    train = EmotionDataset(config.data.path, config.data.train_split, **kwargs)
    valid = EmotionDataset(config.data.path, config.data.valid_split, **kwargs)
    try:
        test = EmotionDataset(config.data.path, config.data.test_split, **kwargs)
    except ValueError:  # a dataset without a test split still trains
        test = None
    return train, valid, test


def _feature_datasets(config: RunConfig) -> tuple[Dataset, Dataset, Dataset | None]:
    """The baselines read hand-crafted feature sequences (`mesm.data.handcrafted.features`)."""
    from mesm.data.handcrafted.dataset import FeatureDataset
    from mesm.data.handcrafted.features import FeatureSettings

    try:
        settings = FeatureSettings.from_dict(config.data.features)
    except TypeError as err:
        raise ConfigError(f"data.features: {err}") from err
    path, data = config.data.path, config.data
    train = FeatureDataset(path, data.train_split, settings=settings)
    valid = FeatureDataset(path, data.valid_split, settings=settings)
    try:
        test = FeatureDataset(path, data.test_split, settings=settings)
    except ValueError:
        test = None
    return train, valid, test


def _loader(dataset: Dataset, config: RunConfig, shuffle: bool) -> DataLoader:
    workers = config.data.num_workers
    return DataLoader(
        dataset,
        batch_size=config.data.batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=dataset.collate,
        persistent_workers=workers > 0,
    )


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    datasets: tuple[Dataset, Dataset, Dataset | None] | None = None,
    enable_progress_bar: bool = True,
    callbacks: list[pl.Callback] | None = None,
    precision: Precision | None = None,
) -> RunResult:
    """Trains, validates every epoch, keeps the best epoch by average F1, tests it.

    Args:
        config: the run config (its ``data.path`` is used unless `datasets` is given).
        run_dir: output folder; with ``resume=True`` the folder of an interrupted run.
        resume: continue from ``run_dir/checkpoints/last.ckpt`` (model, optimiser, scheduler,
            loops, epoch and step).
        datasets: (train, valid, test-or-None) datasets with ``collate``, ``label_names``,
            ``info.task`` and ``pos_weight()``, as :class:`mesm.data.media.dataset.EmotionDataset`.
        enable_progress_bar: show Lightning's progress bar.
        callbacks: extra Lightning callbacks.
        precision: the precision, resolved by the caller for ``trainer.accelerator`` from
            the config's ``trainer.precision`` (None: resolved here).

    Returns:
        The run's files and the best epoch's metrics.
    """
    run_dir = Path(run_dir)
    last = _check_run_dir(run_dir, resume)
    t = config.trainer
    if precision is None:
        precision = resolve_precision(t.precision, t.accelerator)
    make_output_dir(run_dir)

    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    train_set, valid_set, test_set = datasets or _datasets(config)
    module = _module(config, train_set, run_dir)
    best_cb = ModelCheckpoint(dirpath=last.parent, filename="best", monitor=MONITOR, mode="max")
    rank_zero_info(f"training {precision.describe()}")
    silence_lightning_notices()
    trainer = _trainer(
        config,
        run_dir,
        precision,
        len(train_set),
        progress=enable_progress_bar,
        callbacks=[best_cb, *(callbacks or [])],
    )
    trainer.fit(
        module,
        _loader(train_set, config, shuffle=config.data.shuffle),
        _loader(valid_set, config, shuffle=False),
        ckpt_path=str(last) if resume else None,
    )
    best_ckpt = Path(best_cb.best_model_path or last)
    metrics = _best_metrics(trainer, module, best_ckpt, config, valid_set, test_set)
    checkpoint = run_dir / "best.safetensors"
    if trainer.is_global_zero:
        _save_model(checkpoint, module, train_set, config)
        atomic_write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, checkpoint, best_ckpt, last, metrics)


def _module(config: RunConfig, train_set: Dataset, run_dir: Path) -> EmotionModule:
    """The model the config and the data describe, in its LightningModule; the resolved config
    is written to ``run_dir/config.yaml``."""
    label_names = list(train_set.label_names)
    # Feature datasets fix the baselines' input widths and emotion names.
    overrides = train_set.model_overrides() if hasattr(train_set, "model_overrides") else {}
    model_config = config.model_config(num_classes=len(label_names), **overrides)
    model = build_model(model_config)
    save_run_config(config.resolved(model_config), run_dir / "config.yaml")
    return EmotionModule(
        model,
        label_names=label_names,
        task=train_set.info.task,
        pos_weight=train_set.pos_weight(),
        lr=config.optim.lr,
        text_lr_factor=config.optim.text_lr_factor,
        weight_decay=config.optim.weight_decay,
        scheduler=config.optim.scheduler,
        modality_dropout=config.optim.modality_dropout,
        modality_loss=config.optim.modality_loss,
    )


def _save_model(
    checkpoint: Path, module: EmotionModule, train_set: Dataset, config: RunConfig
) -> None:
    """The trained model with its header: labels, task, tuned thresholds, preprocessing."""
    settings = getattr(getattr(train_set, "cache", None), "settings", None)
    save_checkpoint(
        checkpoint,
        module.model,
        label_names=list(train_set.label_names),
        task=train_set.info.task,
        thresholds=module.thresholds.tolist(),
        preprocessing=dataclasses.asdict(settings) if settings is not None else {},
        extra={"max_text_length": config.data.max_text_length},
    )


def _check_run_dir(run_dir: Path, resume: bool) -> Path:
    """``run_dir/checkpoints/last.ckpt``, after checking that it exists iff resuming."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise MissingInputError(f"cannot resume: {last} does not exist")
    if not resume and last.is_file():
        raise OutputPathError(
            errno.EEXIST, "already holds a run; resume it or choose another folder", str(run_dir)
        )
    return last


def _trainer(
    config: RunConfig,
    run_dir: Path,
    precision: Precision,
    num_train: int,
    *,
    progress: bool,
    callbacks: list[pl.Callback],
) -> pl.Trainer:
    """The Lightning trainer of a run: early stopping, the "last" checkpoint (the state
    ``--resume`` continues from), CSV and TensorBoard logs, the weights-only checkpoint reader.
    `callbacks` begins with the "best" checkpoint, which must run before "last" saves."""
    t = config.trainer
    # Without a monitor it saves after every epoch: the state --resume continues from.
    last_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False
    )
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=precision.lightning,
        deterministic=t.deterministic,
        # Dense BN layers become SyncBatchNorm; MESM's sparse stages keep per-process statistics.
        sync_batchnorm=t.sync_batchnorm,
        gradient_clip_val=config.optim.grad_clip or None,
        log_every_n_steps=log_interval(
            t.log_every_n_steps, num_train, config.data.batch_size, t.limit_train_batches
        ),
        **batch_limits(t.limit_train_batches, t.limit_val_batches),
        callbacks=[
            callbacks[0],
            last_cb,
            EarlyStopping(MONITOR, mode="max", patience=t.patience),
            *callbacks[1:],
        ],
        # One version folder per (re)start, so a resume never overwrites earlier logs.
        logger=[
            CSVLogger(run_dir / "logs", name="csv"),
            TensorBoardLogger(run_dir / "logs", name="tb"),
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        plugins=[SafeCheckpointIO()],
    )


def _best_metrics(trainer, module, best_ckpt: Path, config, valid_set, test_set) -> dict:
    """The best epoch's weights loaded back, validated (thresholds tuned) and tested."""
    state = torch.load(best_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    metrics: dict[str, Any] = {"best_epoch_checkpoint": best_ckpt.name}
    trainer.validate(module, _loader(valid_set, config, shuffle=False), verbose=False)
    metrics["valid"] = module.last_report.get("val")
    if test_set is not None:
        trainer.test(module, _loader(test_set, config, shuffle=False), verbose=False)
        metrics["test"] = module.last_report.get("test")
    return metrics
