"""Length statistics and length-adjusted differences: planted length and content effects are recovered."""

from __future__ import annotations

import numpy as np
import pytest

from altcap.metrics.bootstrap import draw_weights
from altcap.metrics.length import (
    adjust_all_pairs,
    adjust_pair,
    compare_lengths,
    fit_length_regression,
    summarise_length,
)

N_IMAGES = 300


def test_length_summary() -> None:
    stats = summarise_length(["a dog", "a dog runs", "a brown dog runs fast", "one, two; three four!"])
    assert stats["mean_words"] == pytest.approx(3.5) and stats["median_words"] == pytest.approx(3.5)
    assert stats["min_words"] == 2 and stats["max_words"] == 5 and stats["n_captions"] == 4
    assert stats["q1_words"] == pytest.approx(2.75) and stats["q3_words"] == pytest.approx(4.25)


def test_regression_of_all_images_is_ordinary_least_squares() -> None:
    rng = np.random.default_rng(1)
    x, d = rng.normal(size=50), rng.normal(size=50)
    mean_d, intercept, slope = fit_length_regression(d, x, np.ones((1, 50)))
    expected_slope, expected_intercept = np.polyfit(x, d, 1)
    assert slope[0] == pytest.approx(expected_slope) and intercept[0] == pytest.approx(expected_intercept)
    assert mean_d[0] == pytest.approx(d.mean())


def planted_systems(seed: int = 0) -> tuple[dict, dict]:
    """Three systems over the same images.

    longer: scores 0.05 per extra word and nothing else (wins only by being longer);
    better: same length distribution as base, +0.2 on every image (a content effect).
    """
    rng = np.random.default_rng(seed)
    base_len = rng.integers(6, 14, N_IMAGES).astype(float)
    content = rng.uniform(0.2, 0.8, N_IMAGES)
    longer_len = base_len + rng.integers(0, 7, N_IMAGES)
    better_len = base_len + rng.integers(-2, 3, N_IMAGES)

    def score(length: np.ndarray, bonus: float) -> np.ndarray:
        return content + 0.05 * length + bonus + rng.normal(0, 0.02, N_IMAGES)

    per_image = {
        "base": {"CIDEr-D": score(base_len, 0.0)},
        "longer": {"CIDEr-D": score(longer_len, 0.0)},
        "better": {"CIDEr-D": score(better_len, 0.2)},
    }
    return per_image, {"base": base_len, "longer": longer_len, "better": better_len}


def test_planted_length_and_content_effects_are_recovered() -> None:
    per_image, lengths = planted_systems()
    weights = draw_weights(N_IMAGES, 400, seed=0)
    records = {(r["a"], r["b"]): r for r in adjust_all_pairs(per_image, lengths, ["CIDEr-D"], weights, 0.95)}
    length_only = records[("base", "longer")]
    assert length_only["raw_ci_low"] > 0.1  # ~0.05 x 3 words, clearly above 0
    assert length_only["adjusted_ci_low"] <= 0 <= length_only["adjusted_ci_high"]
    assert length_only["slope_per_word"] == pytest.approx(0.05, abs=0.005)
    assert length_only["explained_by_length"] is True
    assert "explained by caption length alone" in length_only["note"]
    assert "longer's captions are 3.0 words longer" in length_only["note"]
    content = records[("base", "better")]
    assert content["adjusted_diff"] == pytest.approx(0.2, abs=0.01)
    assert content["adjusted_ci_low"] > 0.18 and content["explained_by_length"] is False
    assert content["note"] is None
    # longer vs better: better is shorter yet scores higher once length is held fixed
    assert records[("longer", "better")]["adjusted_diff"] == pytest.approx(0.2, abs=0.02)


def test_nan_images_are_skipped_and_constant_length_gap_is_not_adjusted() -> None:
    weights = draw_weights(40, 200, seed=3)
    a = np.linspace(0, 1, 40)
    b = a + 0.3
    b[5] = np.nan
    entry = adjust_pair(a, b, np.full(40, 8.0), np.full(40, 10.0), weights, 0.95)
    assert entry["raw_diff"] == pytest.approx(0.3)
    assert entry["adjusted_diff"] is None and entry["explained_by_length"] is False


def test_length_comparison_is_paired() -> None:
    _, lengths = planted_systems()
    weights = draw_weights(N_IMAGES, 300, seed=0)
    (row, *_) = compare_lengths(["base", "longer"], lengths, weights, 0.95)
    assert row["diff_words"] == pytest.approx((lengths["longer"] - lengths["base"]).mean())
    assert 2.5 < row["ci_low"] < row["diff_words"] < row["ci_high"] < 3.5 and row["p_value"] < 0.01
