"""`loss_curves.png`: mean training loss and validation loss per epoch."""

from __future__ import annotations

from pathlib import Path

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
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (caption tokens)")
    ax.set_title("altcap train: loss per epoch")
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
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("CIDEr-D (training tokenisation)")
    ax.set_title("altcap train --objective scst: reward")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
