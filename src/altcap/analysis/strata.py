"""Ratings by stratum (issue #29): by where the image appears (`context`) and by photo-quality flag.

What a good description says depends on its context (Kreiss et al. 2022), and blind users' photos are
often blurry or dark; a fine-tuned model may help in one stratum and hurt in another. Each stratum
reports, for the primary Likert item, the ratings per system and the mean per-participant gain
(fine-tuned - base, over participants who rated both systems in that stratum), with a bootstrap CI
only from `MIN_PAIRS_FOR_CI` such participants on (fewer report n and the mean alone). Strata are
descriptive: the pre-registered primary test stays the one on all images. `markdown.render_strata`
writes the table (analysis.md and the memo).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from altcap.analysis.stats import SYSTEMS, bootstrap_ci, select_likert
from altcap.data.context import NO_CONTEXT
from altcap.metrics.quality_split import NO_FLAGS

MIN_PAIRS_FOR_CI = 5  # a CI from fewer participants' gains is mostly resampling noise


def _groups_of(value: str, column: str) -> list[str]:
    if column == "quality_flags":
        return [f for f in value.split(";") if f] or [NO_FLAGS]
    return [value.strip() or NO_CONTEXT]


def describe_stratum(rows: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """One stratum's ratings per system and mean per-participant gain.

    Args:
        rows: `select_likert` rows of the primary item inside the stratum.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        n_images, n_ratings, per-system n and mean, n_pairs, mean_gain and its CI (None below the minimum).
    """
    systems = {
        s: {"n": int((rows["system"] == s).sum()), "mean": _mean(rows.loc[rows["system"] == s, "value"])}
        for s in SYSTEMS
    }
    means = rows.pivot_table(index="participant_id", columns="system", values="value", aggfunc="mean")
    both = set(SYSTEMS) <= set(means)
    gains = (means["finetuned"] - means["base"]).dropna().to_numpy() if both else np.array([])
    enough = len(gains) >= MIN_PAIRS_FOR_CI
    low, high = bootstrap_ci(gains, np.mean, n_boot, seed) if enough else (None, None)
    return {
        "n_images": int(rows["image"].nunique()),
        "n_ratings": len(rows),
        "systems": systems,
        "n_pairs": len(gains),
        "mean_gain": float(gains.mean()) if len(gains) else None,
        "mean_gain_ci_low": low,
        "mean_gain_ci_high": high,
    }


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def analyze_strata(
    responses: pd.DataFrame, item: str, column: str, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """Ratings of `item` split by `column` ("context" or "quality_flags") of the export.

    Args:
        responses: the kept responses (exclusions and practice removed).
        item: the primary Likert item.
        column: the export column to split by; a rating with several flags counts in each flag's group.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        {"item", "min_pairs_for_ci", "groups": {name: describe_stratum(...)}} with the empty-value group
        ("(no context)" / "no flags") last, or None when the export lacks the column or no rating has a
        value in it (then the split says nothing).
    """
    if column not in responses.columns:
        return None
    rows = select_likert(responses, item)
    if rows.empty or not (rows[column].astype(str).str.strip() != "").any():
        return None
    labels = rows[column].astype(str).map(lambda value: _groups_of(value, column))
    exploded = rows.assign(_group=labels).explode("_group")
    names = sorted(set(exploded["_group"]) - {NO_CONTEXT, NO_FLAGS})
    names += [n for n in (NO_CONTEXT, NO_FLAGS) if n in set(exploded["_group"])]
    groups = {
        name: describe_stratum(exploded[exploded["_group"] == name], n_boot, seed) for name in names
    }
    return {"item": item, "min_pairs_for_ci": MIN_PAIRS_FOR_CI, "groups": groups}
