"""Caption length, and metric differences between systems with caption length held fixed.

Why: blind and low-vision readers' ratings track description length (Kreiss et al. 2022 report
r = 0.60 between length alone and the mean overall rating), and n-gram metrics reward or punish
length too (CIDEr-D's Gaussian length penalty, BLEU's brevity penalty). SCST, for one, wins CIDEr-D
partly by shortening captions. So a metric gain is split here into what length explains and what it
does not.

Method, per pair of systems (a, b) and per metric with per-image scores: regress the per-image
score difference d_i = s_b,i - s_a,i on the per-image word-count difference x_i = len_b,i - len_a,i,
d_i = alpha + beta * x_i. The raw difference is mean(d); the length-adjusted difference is alpha,
the expected score difference between the two systems' captions of one image when they have the
same length (the paired form of an ANCOVA with length difference as covariate). Both come with
percentile CIs from the same image resamples as every other CI (`bootstrap.draw_weights`), each
resample refitting the regression by weighted least squares. When the raw CI excludes 0 and the
adjusted CI covers it, the difference is reported as explained by length alone.

Caveat: alpha extrapolates to equal length; when the two systems' lengths barely overlap (x_i far
from 0 for every image) it rests on the linear form, and `mean_length_diff_words` shows how far.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from altcap.metrics.accessibility import count_words
from altcap.metrics.bootstrap import compare_paired

MIN_LENGTH_VARIANCE = 1e-9  # word-count differences that never vary leave the slope undefined


def summarise_length(captions: list[str]) -> dict[str, Any]:
    """Word-count distribution of one system's captions.

    Args:
        captions: raw captions, one per image.

    Returns:
        mean, median, first and third quartile, min and max words, and the number of captions.
    """
    lengths = np.array([count_words(c) for c in captions], dtype=float)
    q1, median, q3 = np.percentile(lengths, [25, 50, 75])
    return {
        "mean_words": float(lengths.mean()),
        "median_words": float(median),
        "q1_words": float(q1),
        "q3_words": float(q3),
        "min_words": int(lengths.min()),
        "max_words": int(lengths.max()),
        "n_captions": len(captions),
    }


def fit_length_regression(
    diffs: np.ndarray, length_diffs: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of d on x for every row of `weights` (resamples x images).

    Args:
        diffs: (images,) per-image score differences; NaN images are left out.
        length_diffs: (images,) per-image word-count differences.
        weights: (resamples, images) draw counts.

    Returns:
        (mean difference, intercept, slope), each (resamples,); intercept and slope are NaN where the
        length differences of a resample do not vary.
    """
    valid = ~np.isnan(diffs)
    w = weights * valid[None, :]
    d = np.where(valid, diffs, 0.0)
    x = length_diffs.astype(float)
    total = np.maximum(w.sum(axis=1), 1.0)
    mean_x, mean_d = (w @ x) / total, (w @ d) / total
    var_x = (w @ (x * x)) / total - mean_x**2
    cov_xd = (w @ (x * d)) / total - mean_x * mean_d
    identified = var_x > MIN_LENGTH_VARIANCE
    slope = np.where(identified, cov_xd / np.where(identified, var_x, 1.0), np.nan)
    return mean_d, mean_d - slope * mean_x, slope


def adjust_pair(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    lengths_a: np.ndarray,
    lengths_b: np.ndarray,
    weights: np.ndarray,
    level: float,
) -> dict[str, Any]:
    """Raw and length-adjusted difference b - a of one metric, with bootstrap CIs and p-values.

    Args:
        scores_a: (images,) per-image scores of system a (NaN where undefined).
        scores_b: (images,) the same images' scores of system b.
        lengths_a: (images,) a's caption word counts.
        lengths_b: (images,) b's caption word counts.
        weights: (resamples, images) the shared image resampling.
        level: confidence level.

    Returns:
        raw_diff / adjusted_diff with ci_low, ci_high and p_value each, the slope (score per extra
        word), the mean word-count difference, and whether length alone explains the difference.
    """
    diffs = np.asarray(scores_b, float) - np.asarray(scores_a, float)
    length_diffs = np.asarray(lengths_b, float) - np.asarray(lengths_a, float)
    (raw,), (adjusted,), (slope,) = fit_length_regression(diffs, length_diffs, np.ones((1, len(diffs))))
    raw_reps, adjusted_reps, _ = fit_length_regression(diffs, length_diffs, weights)
    out: dict[str, Any] = {
        **summarise_difference("raw", raw, raw_reps, level),
        **dict.fromkeys(("adjusted_diff", "adjusted_ci_low", "adjusted_ci_high", "adjusted_p_value")),
        "slope_per_word": None if np.isnan(slope) else float(slope),
        "mean_length_diff_words": float(length_diffs.mean()),
        "explained_by_length": False,
    }
    if np.isnan(adjusted) or np.isnan(adjusted_reps).mean() > 1 - level:
        return out  # no length variation to adjust for
    out.update(summarise_difference("adjusted", adjusted, adjusted_reps, level))
    raw_clear = out["raw_ci_low"] > 0 or out["raw_ci_high"] < 0
    out["explained_by_length"] = bool(raw_clear and out["adjusted_ci_low"] <= 0 <= out["adjusted_ci_high"])
    return out


def summarise_difference(prefix: str, value: float, replicates: np.ndarray, level: float) -> dict[str, float]:
    """{prefix}_diff, _ci_low, _ci_high and _p_value of one difference from its bootstrap replicates."""
    test = compare_paired(0.0, value, np.zeros_like(replicates), replicates, level)
    return {
        f"{prefix}_diff": float(value),
        f"{prefix}_ci_low": test.ci_low,
        f"{prefix}_ci_high": test.ci_high,
        f"{prefix}_p_value": test.p_value,
    }


def describe_length_explained(entry: dict[str, Any], level: float) -> str | None:
    """The plain sentence for a difference that length alone explains (None otherwise)."""
    if not entry["explained_by_length"]:
        return None
    pct = f"{round(level * 100)}%"
    direction = "longer" if entry["mean_length_diff_words"] > 0 else "shorter"
    return (
        f"The {entry['metric']} difference {entry['b']} - {entry['a']} ({entry['raw_diff']:.3f}, {pct} CI "
        f"{entry['raw_ci_low']:.3f} to {entry['raw_ci_high']:.3f}) is explained by caption length alone: "
        f"{entry['b']}'s captions are {abs(entry['mean_length_diff_words']):.1f} words {direction} on "
        f"average, and at equal length the difference is {entry['adjusted_diff']:.3f} ({pct} CI "
        f"{entry['adjusted_ci_low']:.3f} to {entry['adjusted_ci_high']:.3f}, which includes 0)."
    )


def compare_lengths(
    names: list[str], lengths: dict[str, np.ndarray], weights: np.ndarray, level: float
) -> list[dict[str, Any]]:
    """Paired bootstrap of the mean word-count difference b - a for every pair of systems."""
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            rep_a, rep_b = (weights @ lengths[n] / weights.sum(axis=1) for n in (a, b))
            test = compare_paired(lengths[a].mean(), lengths[b].mean(), rep_a, rep_b, level)
            out.append(
                {
                    "a": a,
                    "b": b,
                    "diff_words": test.diff,
                    "ci_low": test.ci_low,
                    "ci_high": test.ci_high,
                    "p_value": test.p_value,
                }
            )
    return out


def adjust_all_pairs(
    per_image: dict[str, dict[str, np.ndarray]],
    lengths: dict[str, np.ndarray],
    metrics: list[str],
    weights: np.ndarray,
    level: float,
) -> list[dict[str, Any]]:
    """`adjust_pair` for every pair of systems (in the given order) and every metric both have.

    Args:
        per_image: system -> metric -> (images,) per-image scores.
        lengths: system -> (images,) caption word counts.
        metrics: metric names, in report order.
        weights: the shared image resampling.
        level: confidence level.

    Returns:
        One record per (a, b, metric) with `adjust_pair`'s fields and `note` (the plain sentence or None).
    """
    names = list(per_image)
    records = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for metric in metrics:
                if metric not in per_image[a] or metric not in per_image[b]:
                    continue
                entry = {"a": a, "b": b, "metric": metric}
                entry.update(
                    adjust_pair(
                        per_image[a][metric],
                        per_image[b][metric],
                        lengths[a],
                        lengths[b],
                        weights,
                        level,
                    )
                )
                entry["note"] = describe_length_explained(entry, level)
                records.append(entry)
    return records
