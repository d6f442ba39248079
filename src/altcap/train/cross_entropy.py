"""The cross-entropy objective: one example per reference caption, loss over its caption tokens.

`objectives.py` maps `objective: cross_entropy` to the functions here; `scst.py` is the other one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from altcap.train.cache import CollateWithFeatures
from altcap.train.checkpoint import TrainState
from altcap.train.config import TrainConfig
from altcap.train.data import make_collate
from altcap.train.logs import TRAIN_LOG, read_log_rows
from altcap.train.plots import LOSS_CURVES, MIN_EPOCHS_PER_EPOCH_PLOT, plot_loss_curves, plot_step_losses


class CaptionLoss(torch.nn.Module):
    """Wraps the model so DDP/FSDP see one forward, whether features come from the cache or not."""

    def __init__(self, model: torch.nn.Module, family: Any):
        super().__init__()
        self.model = model
        self.family = family

    def forward(
        self, inputs: dict[str, Any], features: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Mean loss over caption tokens."""
        if features is None:
            if self.family.caption_loss is not None:
                return self.family.caption_loss(self.model, inputs)
            return self.model(**inputs).loss
        return self.family.feature_cache.forward_from_features(self.model, features, inputs)


def build_caption_loss(
    cfg: TrainConfig, plan: Any, model: Any, processor: Any, cache: Any
) -> tuple[CaptionLoss, Any]:
    """The cross-entropy loss module and its collate function.

    Args:
        cfg: the training config (caption token limit).
        plan: the validated plan (its model family).
        model: the PEFT-wrapped model.
        processor: the model's processor.
        cache: the filled feature cache, or None.

    Returns:
        (loss module, collate function).
    """
    # With the cache, the loss reads cached features, so the loaders never decode an image.
    collate = make_collate(plan.family, processor, cfg.data.max_caption_tokens, with_pixels=cache is None)
    if cache is not None:
        collate = CollateWithFeatures(collate, cache)
    return CaptionLoss(model, plan.family), collate


def compute_caption_loss(loss_module: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Caption-token loss of one batch, from cached features when the batch carries them."""
    return loss_module(batch["inputs"], batch.get("features"))


def plot_caption_loss(state: TrainState, out_dir: Path) -> Path:
    """loss_curves.png: train and validation loss per epoch, or per logged step under 3 epochs."""
    rows = read_log_rows(out_dir / TRAIN_LOG)
    if len(state.epoch_train_losses) < MIN_EPOCHS_PER_EPOCH_PLOT and rows:
        return plot_step_losses(rows, out_dir / LOSS_CURVES)
    return plot_loss_curves(state.epoch_train_losses, state.epoch_val_losses, out_dir / LOSS_CURVES)
