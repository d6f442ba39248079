"""Charts for the analysis and the memo; every figure of simulated data carries a SIMULATED stamp."""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the analysis runs on servers and in CI

import matplotlib.pyplot as plt
import numpy as np

SIM_STAMP = "SIMULATED DATA"
logger = logging.getLogger(__name__)
# Column names of per_image.jsonl and analysis.json as a reader would say them; others lose underscores.
READABLE_NAMES = {
    "embedding_distance": "embedding distance",
    "length_words": "length (words)",
    "task_accuracy": "task accuracy",
    "scene_graph_f1": "scene-graph F1 (not SPICE)",
    "hallucinated_mentions": "hallucinated objects",
}
LABEL_WRAP_CHARS = 12


def name_readably(name: str) -> str:
    """A metric, item or outcome name for a chart label ("embedding_distance" -> "embedding distance")."""
    return READABLE_NAMES.get(name, name.replace("_", " "))


def stamp_figure(fig: plt.Figure, simulated: bool) -> None:
    """Write a large diagonal SIMULATED watermark and a corner label on simulated figures."""
    if not simulated:
        return
    fig.text(0.5, 0.5, SIM_STAMP, fontsize=28, color="red", alpha=0.25, ha="center", va="center", rotation=20)
    fig.text(0.01, 0.99, SIM_STAMP, fontsize=8, color="red", ha="left", va="top", weight="bold")


def save_figure(fig: plt.Figure, out_stem: Path, simulated: bool) -> list[Path]:
    """Stamp and save as PNG and SVG; returns the written paths."""
    stamp_figure(fig, simulated)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    # svg.fonttype=none keeps labels (and the SIMULATED stamp) as real, searchable, screen-readable text
    with plt.rc_context({"svg.fonttype": "none"}):
        for path in paths:
            fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def plot_likert(descriptives: dict[str, Any], scale_max: int, out_stem: Path, simulated: bool) -> list[Path]:
    """Diverging stacked bars: share of each rating per item x system, centred on the scale midpoint.

    Args:
        descriptives: analysis.json "descriptives" ({item: {system: {"counts": {...}}}}).
        scale_max: the Likert scale maximum.
        out_stem: output path without suffix.
        simulated: stamp the figure.

    Returns:
        The PNG and SVG paths.
    """
    return save_figure(build_likert_figure(descriptives, scale_max), out_stem, simulated)


def build_likert_figure(descriptives: dict[str, Any], scale_max: int) -> plt.Figure:
    """The figure of `plot_likert` (not saved)."""
    labels, shares = [], []
    for item, by_system in descriptives.items():
        for system, block in by_system.items():
            counts = np.array([block["counts"].get(str(k), 0) for k in range(1, scale_max + 1)], dtype=float)
            labels.append(f"{name_readably(item)}\n{system}")
            shares.append(counts / counts.sum() if counts.sum() else counts)
    fig, ax = plt.subplots(figsize=(6.5, 0.55 * len(labels) + 1.0))
    colors = plt.get_cmap("RdBu")(np.linspace(0.1, 0.9, scale_max))
    mid = (scale_max + 1) / 2
    for row, share in enumerate(shares):
        left = -share[: int(np.floor(mid)) - 1].sum() - (share[int(mid) - 1] / 2 if mid == int(mid) else 0)
        for level in range(scale_max):
            ax.barh(
                row,
                share[level],
                left=left,
                color=colors[level],
                edgecolor="white",
                label=str(level + 1) if row == 0 else None,
            )
            left += share[level]
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("share of ratings (left of 0: below the midpoint)")
    ax.legend(title="rating", ncol=scale_max, loc="upper center", bbox_to_anchor=(0.5, -0.35), fontsize=7)
    ax.invert_yaxis()
    return fig


def build_error_bars(
    estimate: float | None, ci_low: float | None, ci_high: float | None
) -> tuple[float, float, float]:
    """(height, error below, error above) of one bar: never negative errors, NaN when not estimated.

    A percentile bootstrap CI of a statistic with many ties (Kendall tau of Likert gains over a few
    images) can miss its own point estimate; the bar then spans the smallest interval holding both,
    instead of matplotlib refusing a negative error bar and the chart being lost.
    """
    if estimate is None or not math.isfinite(estimate):
        return math.nan, 0.0, 0.0
    low = estimate if ci_low is None else min(ci_low, estimate)
    high = estimate if ci_high is None else max(ci_high, estimate)
    return estimate, estimate - low, high - estimate


def plot_validity(validity: dict[str, Any], out_stem: Path, simulated: bool) -> list[Path]:
    """Kendall tau (with 95% CI) of each metric's per-image gain against each human gain.

    Args:
        validity: analysis.json "metric_validity" ({"outcomes": {outcome: {metric: {tau, ci_low, ...}}}}).
        out_stem: output path without suffix.
        simulated: stamp the figure.

    Returns:
        The PNG and SVG paths.
    """
    return save_figure(build_validity_figure(validity), out_stem, simulated)


def build_validity_figure(validity: dict[str, Any]) -> plt.Figure:
    """The figure of `plot_validity` (not saved): one group of bars per metric, one bar per outcome."""
    outcomes = validity["outcomes"]
    metrics = sorted({m for v in outcomes.values() for m in v})
    # Wider with more metrics, so each label keeps about an inch (the demo run has 7 metrics).
    fig, ax = plt.subplots(figsize=(max(6.5, 0.95 * len(metrics)), 3.0))
    width = 0.8 / max(len(outcomes), 1)
    for k, (outcome, by_metric) in enumerate(outcomes.items()):
        xs = np.arange(len(metrics)) + k * width
        blocks = [by_metric.get(m, {}) for m in metrics]
        bars = [build_error_bars(b.get("tau"), b.get("ci_low"), b.get("ci_high")) for b in blocks]
        if not bars:
            continue
        taus, lows, highs = (list(column) for column in zip(*bars, strict=True))
        ax.bar(xs, taus, width, yerr=[lows, highs], capsize=3, label=name_readably(outcome))
    ax.axhline(0, color="black", linewidth=0.8)
    labels = [textwrap.fill(name_readably(m), LABEL_WRAP_CHARS) for m in metrics]
    ax.set_xticks(np.arange(len(metrics)) + width * (len(outcomes) - 1) / 2, labels, fontsize=8)
    if len(metrics) > 5:
        ax.tick_params(axis="x", labelrotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set_ylabel("Kendall tau")
    ax.set_title("Does a metric's per-image gain track the human gain?", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw_charts(result: dict[str, Any], out_dir: Path) -> tuple[list[Path], list[str]]:
    """Every chart of an analysis; one that fails is logged once and left out, and the rest go on.

    Args:
        result: the analysis.json content (descriptives, scale_max, metric_validity, simulated).
        out_dir: the analysis folder.

    Returns:
        (written PNG and SVG paths, one line per chart that could not be drawn).
    """
    simulated = result["simulated"]
    jobs: list[tuple[str, Callable[[Path], list[Path]]]] = [
        ("likert", lambda stem: plot_likert(result["descriptives"], result["scale_max"], stem, simulated))
    ]
    validity = result.get("metric_validity")
    if validity:
        jobs.append(("metric_validity", lambda stem: plot_validity(validity, stem, simulated)))
    paths, problems = [], []
    for name, draw in jobs:
        try:
            paths += draw(out_dir / name)
        except Exception as err:  # a chart only shows numbers that analysis.json and analysis.md hold
            plt.close("all")
            for suffix in (".png", ".svg"):
                (out_dir / name).with_suffix(suffix).unlink(missing_ok=True)
            problems.append(f"{name}: {type(err).__name__}: {err}")
            logger.warning("chart %s not drawn (%s); the analysis goes on without it", name, problems[-1])
    return paths, problems
