"""`loss_curves.png`: mean training loss and validation loss per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers without a display

import matplotlib.pyplot as plt

LOSS_CURVES = "loss_curves.png"


def plot_loss_curves(train_losses: list[float], val_losses: list[float | None], path: Path) -> Path:
    """Plot train vs validation loss per epoch.

    Args:
        train_losses: mean training loss of each completed epoch.
        val_losses: validation loss at the end of each epoch (None where not measured).
        path: PNG file to write.

    Returns:
        `path`.
    """
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = list(range(1, len(train_losses) + 1))
    ax.plot(epochs, train_losses, marker="o", label="train")
    measured = [
        (e, v) for e, v in zip(range(1, len(val_losses) + 1), val_losses, strict=True) if v is not None
    ]
    if measured:
        ax.plot([e for e, _ in measured], [v for _, v in measured], marker="s", label="validation")
    return _save(fig, ax, ("epoch", "loss (caption tokens)", "altcap train: loss per epoch"), path)


def _save(fig: Any, ax: Any, labels: tuple[str, str, str], path: Path) -> Path:
    """Label (x, y, title), add grid and legend, write the PNG and free the figure."""
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


SCST_CURVES = "reward_curves.png"


def plot_scst_rewards(rows: list[dict], path: Path) -> Path:
    """Plot an SCST run's CIDEr-D per logged step: mean of the sampled captions (train) and of
    greedy captions on the validation split (its logged val_loss, negated).

    Args:
        rows: train_log.jsonl rows (`step`, `sample_cider_d`, and `val_loss` where validated).
        path: PNG file to write.

    Returns:
        `path`.
    """
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    sampled = [(r["step"], r["sample_cider_d"]) for r in rows if "sample_cider_d" in r]
    greedy = [(r["step"], -r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if sampled:
        ax.plot(*zip(*sampled, strict=True), marker=".", label="train: sampled captions (mean)")
    if greedy:
        ax.plot(*zip(*greedy, strict=True), marker="s", label="validation: greedy captions")
    labels = ("optimizer step", "CIDEr-D (training tokenisation)", "altcap train --objective scst: reward")
    return _save(fig, ax, labels, path)
