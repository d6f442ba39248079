"""Metric validity (issue #14): does an automatic metric's per-image gain track the human gain?

Per image, the finetuned-minus-base difference of each automatic metric (from per_image.jsonl beside
metrics.json) is correlated (Kendall's tau-b, image-bootstrap 95% CI) with the finetuned-minus-base
difference of (a) mean usefulness rating and (b) task accuracy.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from altcap.analysis.stats import SYSTEMS, select_likert, select_tasks

NON_METRIC_KEYS = {"system", "image", "caption", "hallucinated_objects"}
# Per-image metrics where a smaller value is better: agreement with people is their negated tau.
LOWER_IS_BETTER_PER_IMAGE = frozenset({"embedding_distance", "hallucinated_mentions"})
# Shown as the baseline every metric should beat (Kreiss et al. 2022: length alone tracks BLV ratings),
# never picked as the metric that agrees best.
BASELINE_ONLY = frozenset({"length_words"})


def read_per_image(metrics_path: Path) -> pd.DataFrame:
    """per_image.jsonl beside metrics.json as a table (empty when absent)."""
    path = metrics_path.parent / "per_image.jsonl"
    if not path.is_file():
        return pd.DataFrame()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows)


def pick_best_metric(results: dict[str, dict[str, Any]]) -> tuple[str, float] | None:
    """The metric whose per-image changes agree best with one human outcome: (name, signed tau).

    Lower-is-better metrics count by their negated tau; length is a baseline, never the pick.
    """
    candidates = [
        (metric, -r["tau"] if metric in LOWER_IS_BETTER_PER_IMAGE else r["tau"])
        for metric, r in results.items()
        if r["tau"] is not None and metric not in BASELINE_ONLY
    ]
    return max(candidates, key=lambda pair: pair[1], default=None)


def compute_metric_diffs(per_image: pd.DataFrame) -> pd.DataFrame:
    """Image x metric table of finetuned minus base for every numeric per-image column."""
    if per_image.empty or not set(SYSTEMS) <= set(per_image["system"]):
        return pd.DataFrame()
    numeric = [
        c
        for c in per_image.columns
        if c not in NON_METRIC_KEYS
        and pd.api.types.is_numeric_dtype(per_image[c])
        and per_image[c].notna().any()
    ]
    wide = per_image.pivot_table(index="image", columns="system", values=numeric, aggfunc="mean")
    return pd.DataFrame({m: wide[(m, "finetuned")] - wide[(m, "base")] for m in numeric}).dropna(how="all")


def compute_human_diffs(responses: pd.DataFrame, item: str) -> pd.DataFrame:
    """Per image: mean usefulness difference and task accuracy difference (finetuned minus base)."""
    out = {}
    ratings = select_likert(responses, item)
    if not ratings.empty:
        means = ratings.pivot_table(index="image", columns="system", values="value", aggfunc="mean")
        if set(SYSTEMS) <= set(means.columns):
            out["usefulness"] = means["finetuned"] - means["base"]
    tasks = select_tasks(responses)
    if not tasks.empty:
        acc = tasks.pivot_table(index="image", columns="system", values="correct_num", aggfunc="mean")
        if set(SYSTEMS) <= set(acc.columns):
            out["task_accuracy"] = acc["finetuned"] - acc["base"]
    return pd.DataFrame(out)


def kendall_with_ci(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Kendall's tau-b with a percentile image-bootstrap 95% CI (NaN resamples dropped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.kendalltau(x, y)
        rng = np.random.default_rng(seed)
        boots = [stats.kendalltau(x[i], y[i]).statistic for i in rng.integers(0, len(x), (n_boot, len(x)))]
    boots = np.array([b for b in boots if np.isfinite(b)])
    low, high = np.quantile(boots, [0.025, 0.975]) if len(boots) else (np.nan, np.nan)
    tau = float(result.statistic)
    return {
        "tau": tau if np.isfinite(tau) else None,
        "p_value": float(result.pvalue) if np.isfinite(tau) else None,
        "ci_low": float(low) if np.isfinite(low) else None,
        "ci_high": float(high) if np.isfinite(high) else None,
        "n_images": len(x),
    }


def analyze_metric_validity(
    responses: pd.DataFrame, metrics_path: Path | None, item: str, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """Kendall tau between each metric's per-image gain and each human gain.

    Args:
        responses: included participants' responses.
        metrics_path: metrics.json (per_image.jsonl must sit beside it); None skips the analysis.
        item: the Likert item used as usefulness.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        {"outcomes": {outcome: {metric: {tau, ci_low, ci_high, p_value, n_images}}}, "best": ...} or None.
    """
    if metrics_path is None:
        return None
    metric_diffs = compute_metric_diffs(read_per_image(metrics_path))
    human = compute_human_diffs(responses, item)
    if metric_diffs.empty or human.empty:
        return None
    joined = metric_diffs.join(human, how="inner")
    outcomes: dict[str, Any] = {}
    for outcome in human.columns:
        outcomes[outcome] = {}
        for metric in metric_diffs.columns:
            pair = joined[[metric, outcome]].dropna()
            if len(pair) >= 5:
                outcomes[outcome][metric] = kendall_with_ci(
                    pair[metric].to_numpy(), pair[outcome].to_numpy(), n_boot, seed
                )
    best = {o: pick_best_metric(v) for o, v in outcomes.items()}
    return {
        "outcomes": outcomes,
        "best": {o: {"metric": b[0], "tau": b[1]} for o, b in best.items() if b},
        "method": f"Kendall tau-b per image, image bootstrap (n={n_boot}) 95% CI",
    }
