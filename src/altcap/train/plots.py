"""The run folder's curves: `loss_curves.png` (cross-entropy) and `reward_curves.png` (SCST).

Each `build_*` function returns the figure (the chart tests measure its labels); each `plot_*`
writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers without a display

import matplotlib.pyplot as plt

LOSS_CURVES = "loss_curves.png"
SCST_CURVES = "reward_curves.png"
# Fewer epochs than this and a per-epoch plot is one or two dots: plot each logged step instead.
MIN_EPOCHS_PER_EPOCH_PLOT = 3


def plot_loss_curves(train_losses: list[float], val_losses: list[float | None], path: Path) -> Path:
    """Plot train vs validation loss per epoch.

    Args:
        train_losses: mean training loss of each completed epoch.
        val_losses: validation loss at the end of each epoch (None where not measured).
        path: PNG file to write.

    Returns:
        `path`.
    """
    return save_png(build_loss_figure(train_losses, val_losses), path)


def build_loss_figure(train_losses: list[float], val_losses: list[float | None]) -> plt.Figure:
    """The figure of `plot_loss_curves` (not saved)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = list(range(1, len(train_losses) + 1))
    ax.plot(epochs, train_losses, marker="o", label="train")
    measured = [
        (e, v) for e, v in zip(range(1, len(val_losses) + 1), val_losses, strict=True) if v is not None
    ]
    if measured:
        ax.plot([e for e, _ in measured], [v for _, v in measured], marker="s", label="validation")
    ax.xaxis.get_major_locator().set_params(integer=True)  # no "epoch 1.5"
    label_axes(ax, ("epoch", "loss (caption tokens)", "altcap train: loss per epoch"))
    return fig


def plot_step_losses(rows: list[dict[str, Any]], path: Path) -> Path:
    """Plot the training loss of each logged step, and the validation loss where it was measured.

    Args:
        rows: train_log.jsonl rows (`step`, `loss`, and `val_loss` where validated).
        path: PNG file to write.

    Returns:
        `path`.
    """
    return save_png(build_step_loss_figure(rows), path)


def build_step_loss_figure(rows: list[dict[str, Any]]) -> plt.Figure:
    """The figure of `plot_step_losses` (not saved)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), marker=".", label="train (logged step)")
    if val:
        ax.plot(*zip(*val, strict=True), marker="s", linestyle="--", label="validation")
    ax.xaxis.get_major_locator().set_params(integer=True)
    label_axes(ax, ("optimizer step", "loss (caption tokens)", "altcap train: loss per logged step"))
    return fig


def plot_scst_rewards(rows: list[dict], path: Path) -> Path:
    """Plot an SCST run's CIDEr-D per logged step: mean of the sampled captions (train) and of
    greedy captions on the validation split (its logged val_loss, negated).

    Args:
        rows: train_log.jsonl rows (`step`, `sample_cider_d`, and `val_loss` where validated).
        path: PNG file to write.

    Returns:
        `path`.
    """
    return save_png(build_scst_figure(rows), path)


def build_scst_figure(rows: list[dict]) -> plt.Figure:
    """The figure of `plot_scst_rewards` (not saved)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    sampled = [(r["step"], r["sample_cider_d"]) for r in rows if "sample_cider_d" in r]
    greedy = [(r["step"], -r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if sampled:
        ax.plot(*zip(*sampled, strict=True), marker=".", label="train: sampled captions (mean)")
    if greedy:
        ax.plot(*zip(*greedy, strict=True), marker="s", label="validation: greedy captions")
    ax.xaxis.get_major_locator().set_params(integer=True)
    labels = ("optimizer step", "CIDEr-D (training tokenisation)", "altcap train --objective scst: reward")
    label_axes(ax, labels)
    return fig


def label_axes(ax: Any, labels: tuple[str, str, str]) -> None:
    """Label (x, y, title), add grid and legend."""
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2])
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def save_png(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write the PNG and free the figure; returns `path`."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
