"""The memo's pictures read at a glance: each chart of the demo run, rendered, has no two tick
labels on top of each other (bounding boxes from matplotlib's renderer), and human metric names."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from altcap.analysis.charts import build_likert_figure, build_validity_figure
from altcap.analysis.power import rows_to_frame
from altcap.analysis.simulate import SimulationConfig, simulate_study
from altcap.analysis.stats import describe_likert
from altcap.train.plots import build_loss_figure, build_scst_figure, build_step_loss_figure

# The per-image columns of the demo run's per_image.jsonl (SPICE is dropped when Java is missing).
DEMO_METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE", "embedding_distance", "length_words")


def find_overlapping_tick_labels(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of visible tick labels of one axis whose drawn boxes overlap by more than a pixel."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pairs = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            for (name_a, a), (name_b, b) in itertools.combinations(boxes, 2):
                overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
                overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
                if overlap_x > 1 and overlap_y > 1:
                    pairs.append((name_a, name_b))
    return pairs


def build_demo_validity() -> dict:
    rng = np.random.default_rng(0)
    outcomes = {}
    for outcome in ("usefulness", "task_accuracy"):
        taus = rng.uniform(-0.3, 0.5, len(DEMO_METRICS))
        pairs = zip(DEMO_METRICS, taus, strict=True)
        outcomes[outcome] = {m: {"tau": t, "ci_low": t - 0.2, "ci_high": t + 0.2} for m, t in pairs}
    return {"outcomes": outcomes}


def build_demo_log_rows() -> list[dict]:
    """train_log.jsonl of the demo's one epoch of 15 steps, logged each step, validated at the end."""
    rows = [{"step": s, "epoch": 0, "loss": 3.0 - 0.05 * s, "lr": 1e-4} for s in range(1, 16)]
    rows[-1]["val_loss"] = 2.4
    return rows


def build_demo_likert() -> plt.Figure:
    rows, _, _ = simulate_study(SimulationConfig(n_participants=30, effect=0.5, seed=0))
    return build_likert_figure(describe_likert(rows_to_frame(rows), ["usefulness"], 7), 7)


CHARTS = {
    "likert": build_demo_likert,
    "metric_validity": lambda: build_validity_figure(build_demo_validity()),
    "loss per step (1 epoch)": lambda: build_step_loss_figure(build_demo_log_rows()),
    "loss per epoch": lambda: build_loss_figure([3.0, 2.5, 2.2, 2.1], [2.8, 2.4, None, 2.2]),
    "scst reward": lambda: build_scst_figure(
        [{"step": s, "sample_cider_d": 0.5 + 0.01 * s} for s in range(1, 41)]
        + [{"step": 40, "val_loss": -0.6}]
    ),
}


@pytest.mark.parametrize("chart", CHARTS)
def test_no_two_tick_labels_overlap(chart: str) -> None:
    fig = CHARTS[chart]()
    try:
        assert find_overlapping_tick_labels(fig) == []
    finally:
        plt.close(fig)


def test_the_overlap_check_sees_labels_run_into_each_other() -> None:
    """The validity chart as it was: raw column names, unrotated, 6.5 inches wide."""
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    ax.bar(np.arange(7), np.ones(7), 0.4)
    ax.set_xticks(np.arange(7) + 0.2, sorted(DEMO_METRICS), fontsize=8)
    try:
        assert ("embedding_distance", "length_words") in find_overlapping_tick_labels(fig)
    finally:
        plt.close(fig)


def test_validity_chart_says_metric_names_as_a_reader_would() -> None:
    fig = build_validity_figure(build_demo_validity())
    try:
        labels = [t.get_text().replace("\n", " ") for t in fig.axes[0].get_xticklabels()]
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    finally:
        plt.close(fig)
    assert "embedding distance" in labels and "length (words)" in labels
    assert not any("_" in label for label in labels) and legend == ["usefulness", "task accuracy"]


def test_short_runs_plot_each_logged_step() -> None:
    fig = build_step_loss_figure(build_demo_log_rows())
    try:
        train, val = fig.axes[0].get_lines()
        assert len(train.get_xdata()) == 15 and list(val.get_xdata()) == [15]
        assert fig.axes[0].get_xlabel() == "optimizer step"
    finally:
        plt.close(fig)
