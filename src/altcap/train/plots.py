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
