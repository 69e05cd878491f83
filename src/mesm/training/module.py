"""Lightning module around a plain FE2E/MESM model: loss, optimiser groups, validation metrics.

Loss: BCE-with-logits with a per-class positive weight (negatives / positives on the train
split). Optimiser: Adam; the text encoder's learning rate is divided by ``text_lr_factor``.
Validation: per-emotion thresholds tuned on the validation predictions (the paper's procedure),
average F1 logged as ``val/f1`` (the early-stopping and checkpoint monitor). The tuned thresholds
are kept in a buffer so they travel with the checkpoint and are applied unchanged to test.
"""

from __future__ import annotations

import random
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mesm.evaluation import evaluate, tune_thresholds
from mesm.models import BaselineModel, EmotionModel
from mesm.trained.inputs import model_inputs
from mesm.training.config import check_modality_options


class EmotionModule(pl.LightningModule):
    """Trains and validates a model from :mod:`mesm.models`.

    Args:
        model: FE2E, MESM or a baseline.
        label_names: K emotion names.
        task: "single_label" (accuracy) or "multi_label" (weighted accuracy).
        pos_weight: (K,) BCE positive weights.
        lr: learning rate of everything but the text encoder.
        text_lr_factor: the text encoder's learning rate is lr / text_lr_factor.
        weight_decay: Adam weight decay.
        scheduler: "none", "cosine" (over max_epochs) or "plateau" (on val/f1).
        modality_dropout: {"t"|"a"|"v": q}: in training steps each utterance leaves that
            modality's logits out of the fusion with probability q (`EmotionModel.fuse`); an
            utterance whose draws would drop every modality keeps them all.
        modality_loss: weight w of the per-modality losses: each modality's logits are also
            trained to name the emotions alone (the same BCE), and the training loss is the
            fused loss + w x their mean. Validation and checkpoint selection use the fused loss.
    """

    def __init__(
        self,
        model: EmotionModel | BaselineModel,
        *,
        label_names: list[str] | tuple[str, ...],
        task: str,
        pos_weight: Tensor,
        lr: float = 5e-5,
        text_lr_factor: float = 10.0,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        modality_dropout: dict[str, float] | None = None,
        modality_loss: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.label_names = list(label_names)
        self.task = task
        self.lr = lr
        self.text_lr_factor = text_lr_factor
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        modalities = model.modalities if isinstance(model, EmotionModel) else None
        check_modality_options(modality_dropout or {}, modality_loss, modalities)
        self.modality_dropout = {m: q for m, q in (modality_dropout or {}).items() if q > 0}
        self.modality_loss = modality_loss
        self.register_buffer("pos_weight", pos_weight.float().clone())
        self.register_buffer(
            "thresholds", torch.full((len(label_names),), 0.5, dtype=torch.float64)
        )
        self._outputs: dict[str, list[tuple[Tensor, Tensor]]] = {"val": [], "test": []}
        self.last_report: dict[str, dict] = {}

    def forward(self, batch: dict[str, Any]) -> Tensor:
        return self.model(**model_inputs(self.model, batch))

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        # In float32 under autocast too (bf16/fp16 logits from the last linear layer).
        return F.binary_cross_entropy_with_logits(
            logits.float(), labels, pos_weight=self.pos_weight
        )

    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.perf_counter()
        self._epoch_utterances = 0

    def _training_loss(self, batch: dict[str, Any]) -> Tensor:
        """The fused loss, with modality dropout and the per-modality losses when asked for."""
        labels = batch["labels"]
        if not self.modality_dropout and not self.modality_loss:
            return self._loss(self(batch), labels)
        model = self.model
        per_modality = model.forward_modalities(**model_inputs(model, batch))
        keep = self.modality_keep(labels.shape[0]) if self.modality_dropout else None
        loss = self._loss(model.fuse(per_modality, keep), labels)
        if self.modality_loss:
            alone = torch.stack([self._loss(v, labels) for v in per_modality.values()])
            loss = loss + self.modality_loss * alone.mean()
        return loss

    def modality_keep(self, size: int) -> Tensor:
        """(size, M) 0/1: which modalities each utterance keeps (`modality_dropout`'s draw)."""
        modalities = self.model.modalities
        rates = torch.tensor([self.modality_dropout.get(m, 0.0) for m in modalities])
        keep = (torch.rand(size, len(modalities)) >= rates).float()
        keep[keep.sum(dim=1) == 0] = 1.0  # never every modality at once
        return keep.to(self.device)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self._training_loss(batch)
        size = batch["labels"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        # Throughput of this process since the epoch began (data loading included).
        self._epoch_utterances += size
        elapsed = time.perf_counter() - self._epoch_started
        self.log("train/utt_per_s", self._epoch_utterances / max(elapsed, 1e-9), prog_bar=True)
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> None:
        logits = self(batch)
        size = batch["labels"].shape[0]
        self.log(
            f"{stage}/loss", self._loss(logits, batch["labels"]), batch_size=size, sync_dist=True
        )
        # float32 probabilities: bf16/fp16 ones (autocast) would tie in threshold tuning and AUC.
        probs = torch.sigmoid(logits.detach().float())
        self._outputs[stage].append((probs, batch["labels"].detach()))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _gather(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        probs = torch.cat([p for p, _ in self._outputs[stage]])
        labels = torch.cat([y for _, y in self._outputs[stage]])
        self._outputs[stage].clear()
        if self.trainer.world_size > 1:  # every rank evaluates on all predictions
            probs = self.all_gather(probs).flatten(0, 1)
            labels = self.all_gather(labels).flatten(0, 1)
        return probs.float().cpu().numpy(), labels.cpu().numpy().round()

    def _log_report(self, stage: str, report: dict) -> None:
        self.last_report[stage] = report
        metric = report["metric"]
        self.log(f"{stage}/f1", report["average"]["f1"], prog_bar=stage == "val", sync_dist=False)
        self.log(f"{stage}/{metric}", report["average"][metric], sync_dist=False)
        for name, row in report["per_emotion"].items():
            self.log(f"{stage}/f1_{name}", row["f1"], sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        if not self._outputs["val"]:
            return
        probs, labels = self._gather("val")
        thresholds = tune_thresholds(probs, labels)
        self.thresholds.copy_(torch.as_tensor(thresholds))
        self._log_report("val", evaluate(probs, labels, thresholds, self.label_names, self.task))

    def on_test_epoch_end(self) -> None:
        if not self._outputs["test"]:
            return
        probs, labels = self._gather("test")
        thresholds = self.thresholds.cpu().numpy()
        self._log_report("test", evaluate(probs, labels, thresholds, self.label_names, self.task))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # RNG states travel with the checkpoint so that a resumed run draws the same shuffles
        # and dropout masks as an uninterrupted one.
        checkpoint["mesm_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "numpy_pos": int(np.random.get_state()[2]),
            "python": random.getstate()[1],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("mesm_rng")
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        keys = state["numpy"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
        random.setstate((3, tuple(state["python"]), None))

    def configure_optimizers(self) -> Any:
        text, rest = [], []
        for name, param in self.model.named_parameters():
            (text if name.startswith("text.") else rest).append(param)
        groups = [{"params": rest, "lr": self.lr}]
        if text:
            groups.append({"params": text, "lr": self.lr / self.text_lr_factor})
        optimizer = torch.optim.Adam(groups, weight_decay=self.weight_decay)
        if self.scheduler_name == "none":
            return optimizer
        if self.scheduler_name == "cosine":
            epochs = max(1, self.trainer.max_epochs or 1)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        if self.scheduler_name == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", patience=2
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/f1"},
            }
        raise ValueError(f"unknown scheduler {self.scheduler_name!r}")
