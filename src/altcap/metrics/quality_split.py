"""Metrics split by photo-quality flag (`metadata.quality_flags`, written by `altcap data check`).

Photos taken by blind users are often blurry or badly exposed; a model that fails on them hides
inside a corpus mean. Each flag's images (an image may carry several flags) and the images with no
flag are scored apart: the mean of the per-image scores, with a percentile bootstrap CI over that
group's images only where the group has at least `MIN_IMAGES_FOR_CI` images (smaller groups report
n and the mean, no CI). Corpus BLEU and METEOR do not split into per-image parts, so BLEU-4 and
METEOR enter as sentence scores, as in the length-adjusted comparison.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from altcap.metrics.bootstrap import MeanStatistic, RatioStatistic, compute_percentile_ci, draw_weights

QUALITY_KEY = "quality_flags"
NO_FLAGS = "no flags"
MIN_IMAGES_FOR_CI = 10  # below this a bootstrap CI over a handful of photos says more than it knows
SPLIT_METRICS = (
    "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE", "scene_graph_f1", "CHAIR-s", "embedding_distance",
)  # fmt: skip


def group_images_by_flag(metadata: list[dict[str, Any]]) -> dict[str, np.ndarray] | None:
    """Image indices per quality flag, then those without any flag.

    Args:
        metadata: each scored image's manifest metadata, in scoring order.

    Returns:
        {flag: indices} in flag-name order plus NO_FLAGS (possibly empty), or None when no record
        carries `quality_flags` (a manifest `data check` did not write).
    """
    if not any(QUALITY_KEY in m for m in metadata):
        return None
    members: dict[str, list[int]] = {}
    plain: list[int] = []
    for index, meta in enumerate(metadata):
        flags = [str(f) for f in meta.get(QUALITY_KEY) or []]
        for flag in flags:
            members.setdefault(flag, []).append(index)
        if not flags:
            plain.append(index)
    groups = {flag: np.array(members[flag], dtype=int) for flag in sorted(members)}
    groups[NO_FLAGS] = np.array(plain, dtype=int)
    return groups


def _summarise(statistic: Any, value: float, weights: np.ndarray | None, level: float) -> dict[str, Any]:
    if weights is None:
        return {"value": value, "ci_low": None, "ci_high": None}
    replicates = statistic.replicate(weights)
    if np.isnan(replicates).all():
        return {"value": value, "ci_low": None, "ci_high": None}
    low, high = compute_percentile_ci(replicates, level)
    return {"value": value, "ci_low": low, "ci_high": high}


def _mean(values: np.ndarray) -> float | None:
    return float(np.nanmean(values)) if len(values) and not np.isnan(values).all() else None


def summarise_group(
    per_image: dict[str, np.ndarray], index: np.ndarray, weights: np.ndarray | None, level: float
) -> dict[str, Any]:
    """{metric: {value, ci_low, ci_high}} of one system on one group of images.

    Args:
        per_image: the system's per-image scores (all images).
        index: the group's image indices.
        weights: resample draw counts over the group (None = no CI).
        level: the CI level.

    Returns:
        One entry per metric the system has, CHAIR-i (per mention) included when computed.
    """
    out: dict[str, Any] = {}
    for metric in SPLIT_METRICS:
        if metric in per_image:
            values = np.asarray(per_image[metric], dtype=float)[index]
            out[metric] = _summarise(MeanStatistic(values), _mean(values), weights, level)
    if "object_mentions" in per_image:
        mentions = np.asarray(per_image["object_mentions"], float)[index]
        wrong = np.asarray(per_image["hallucinated_mentions"], float)[index]
        value = float(wrong.sum() / mentions.sum()) if mentions.sum() else None
        out["CHAIR-i"] = _summarise(RatioStatistic(wrong, mentions), value, weights, level)
    return out


def split_by_quality_flag(
    metadata: list[dict[str, Any]],
    per_image: dict[str, dict[str, np.ndarray]],
    bootstrap_samples: int,
    level: float,
    seed: int,
) -> dict[str, Any] | None:
    """metrics.json's `by_quality_flag`: per flag (and NO_FLAGS) the image count, every system's
    group means with CIs, and the paired difference b - a of every pair of systems.

    Args:
        metadata: each scored image's manifest metadata, in scoring order.
        per_image: system name -> its multi-reference per-image scores, in that order.
        bootstrap_samples: resamples per group.
        level: CI level.
        seed: resampling seed (each group draws its own resamples from it).

    Returns:
        The block, or None when the manifest has no quality flags.
    """
    groups = group_images_by_flag(metadata)
    if groups is None:
        return None
    block: dict[str, Any] = {"min_images_for_ci": MIN_IMAGES_FOR_CI, "groups": {}}
    for flag, index in groups.items():
        enough = len(index) >= MIN_IMAGES_FOR_CI
        weights = draw_weights(len(index), bootstrap_samples, seed) if enough else None
        block["groups"][flag] = {
            "n_images": len(index),
            "ci": enough,
            "systems": {n: summarise_group(scores, index, weights, level) for n, scores in per_image.items()},
            "differences": _differences(per_image, index, weights, level),
        }
    return block


def _differences(
    per_image: dict[str, dict[str, np.ndarray]], index: np.ndarray, weights: np.ndarray | None, level: float
) -> list[dict[str, Any]]:
    """b - a of the group means for every pair and per-image metric, with a paired CI."""
    rows = []
    for a, b in itertools.combinations(per_image, 2):
        for metric in SPLIT_METRICS:
            if metric not in per_image[a] or metric not in per_image[b]:
                continue
            diff = (np.asarray(per_image[b][metric], float) - np.asarray(per_image[a][metric], float))[index]
            summary = _summarise(MeanStatistic(diff), _mean(diff), weights, level)
            rows.append({"a": a, "b": b, "metric": metric, **summary})
    return rows


def render_quality_markdown(block: dict[str, Any] | None) -> list[str]:
    """metrics.md's section: one row per group and system (CIDEr-D, CHAIR-s, scene-graph F1 means).

    Args:
        block: metrics.json's `by_quality_flag` (None = no flags: no section).

    Returns:
        Markdown lines (empty without flags).
    """
    if not block:
        return []
    shown = ("CIDEr-D", "ROUGE-L", "CHAIR-s", "scene_graph_f1")
    lines = [
        "## By photo quality flag",
        "",
        "Images by `altcap data check`'s photo-quality flag (an image may carry several) and those with",
        "none; means of per-image scores; 95% CI only for groups of at least "
        f"{block['min_images_for_ci']} images.",
        "",
        "| group | images | system | " + " | ".join(shown) + " |",
        "|---|---|---|" + "---|" * len(shown),
    ]
    for flag, group in block["groups"].items():
        for name, metrics in group["systems"].items():
            cells = [_cell(metrics.get(m)) for m in shown]
            lines.append(f"| {flag} | {group['n_images']} | {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry["value"] is None:
        return "-"
    if entry["ci_low"] is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} ({entry['ci_low']:.3f}-{entry['ci_high']:.3f})"
