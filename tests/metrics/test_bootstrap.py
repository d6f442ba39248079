import numpy as np
import pytest
from pycocoevalcap.bleu.bleu_scorer import BleuScorer

from altcap.metrics.bootstrap import (
    BleuStatistic,
    MeanStatistic,
    compare_paired,
    compute_corpus_bleu,
    compute_percentile_ci,
    draw_weights,
)


def test_weights_are_seeded_resamples() -> None:
    weights = draw_weights(30, 100, seed=3)
    assert weights.shape == (100, 30) and (weights.sum(axis=1) == 30).all()
    np.testing.assert_array_equal(weights, draw_weights(30, 100, seed=3))
    assert not np.array_equal(weights, draw_weights(30, 100, seed=4))


def test_ci_of_a_mean_covers_truth_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    n_datasets, true_mean = 200, 1.5
    covered = 0
    for d in range(n_datasets):
        sample = rng.gamma(shape=2.0, scale=true_mean / 2.0, size=80)  # skewed, like CIDEr
        replicates = MeanStatistic(sample).replicate(draw_weights(80, 400, seed=d))
        low, high = compute_percentile_ci(replicates, 0.95)
        covered += low <= true_mean <= high
    # Binomial(200, 0.95) sd is ~1.5 points; percentile CIs undercover slightly at n=80.
    assert 0.89 <= covered / n_datasets <= 0.99


def test_mean_statistic_skips_nan_images() -> None:
    stat = MeanStatistic(np.array([1.0, np.nan, 3.0]))
    assert stat.replicate(np.ones((1, 3)))[0] == pytest.approx(2.0)


def test_corpus_bleu_matches_bleu_scorer() -> None:
    pairs = [
        ("a dog runs on grass", ["a dog runs on the grass", "dog on grass"]),
        ("two men", ["two men play chess in a park"]),
        ("a red car parked near a house", ["a red car is parked by the house", "red car"]),
    ]
    scorer = BleuScorer(n=4)
    for hypothesis, refs in pairs:
        scorer += (hypothesis, refs)
    expected, _ = scorer.compute_score(option="closest")
    test_len = np.array([c["testlen"] for c in scorer.ctest], float)
    ref_len = np.array([scorer._single_reflen(c["reflen"], "closest", c["testlen"]) for c in scorer.ctest])
    guess = np.array([c["guess"] for c in scorer.ctest], float)
    correct = np.array([c["correct"] for c in scorer.ctest], float)
    got = compute_corpus_bleu(
        test_len.sum()[None], ref_len.sum()[None], guess.sum(0)[None], correct.sum(0)[None]
    )
    np.testing.assert_allclose(got[0], expected, rtol=1e-12)
    stat = BleuStatistic(test_len, ref_len, guess, correct, order=4)
    assert stat.replicate(np.ones((1, 3)))[0] == pytest.approx(expected[3], rel=1e-12)


def test_paired_bootstrap_finds_planted_difference() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.3, size=200)
    b = a + 0.1 + rng.normal(0, 0.1, size=200)
    weights = draw_weights(200, 1000, seed=0)
    result = compare_paired(
        a.mean(), b.mean(), MeanStatistic(a).replicate(weights), MeanStatistic(b).replicate(weights), 0.95
    )
    assert result.diff == pytest.approx(b.mean() - a.mean())
    assert result.p_value < 0.01 and 0 < result.ci_low < result.diff < result.ci_high


def test_paired_bootstrap_finds_nothing_between_identical_or_noise_systems() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0.5, 0.3, size=200)
    weights = draw_weights(200, 1000, seed=0)
    rep = MeanStatistic(a).replicate(weights)
    same = compare_paired(a.mean(), a.mean(), rep, rep, 0.95)
    assert same.diff == 0 and same.p_value == 1.0 and same.ci_low == same.ci_high == 0
    b = rng.permutation(a)  # same distribution, no systematic difference
    noise = compare_paired(a.mean(), b.mean(), rep, MeanStatistic(b).replicate(weights), 0.95)
    assert noise.p_value > 0.05 and noise.ci_low < 0 < noise.ci_high
