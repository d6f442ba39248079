"""Bootstrap over images: CIs for corpus metrics and the paired comparison of two systems.

Every metric is a `Statistic`: given a (resamples x images) matrix of counts (how often each image
was drawn), it returns the metric of every resample. Using one count matrix for all metrics and
systems makes the comparisons paired (both systems see the same resampled images) and lets a corpus
statistic such as BLEU be recomputed from summed per-image counts rather than averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# pycocoevalcap's BleuScorer constants (bleu_scorer.py): keep them so a resample of all images
# reproduces the library's corpus BLEU bit for bit.
BLEU_TINY = 1e-15
BLEU_SMALL = 1e-9


class Statistic(Protocol):
    """A corpus metric that can be recomputed on resampled images."""

    def replicate(self, weights: np.ndarray) -> np.ndarray:
        """Metric value for each row of `weights` (resamples x images, draw counts)."""
        ...


@dataclass
class MeanStatistic:
    """A corpus metric that is the mean of per-image scores (ROUGE-L, CIDEr-D, SPICE)."""

    per_image: np.ndarray

    def replicate(self, weights: np.ndarray) -> np.ndarray:
        """Weighted mean of the per-image scores for every resample."""
        values = np.nan_to_num(self.per_image, nan=0.0)
        valid = (~np.isnan(self.per_image)).astype(float)
        # SPICE marks unparsable images NaN; the library's np.mean would turn the corpus NaN, we
        # skip them in resamples so one NaN does not void the whole CI.
        return (weights @ values) / np.maximum(weights @ valid, 1)


@dataclass
class RatioStatistic:
    """A corpus ratio of per-image counts, e.g. hallucinated object mentions / all object mentions."""

    numerator: np.ndarray
    denominator: np.ndarray

    def replicate(self, weights: np.ndarray) -> np.ndarray:
        """Summed numerator over summed denominator for every resample (NaN where nothing is counted)."""
        total = weights @ self.denominator
        return (weights @ self.numerator) / np.where(total > 0, total, np.nan)


@dataclass
class BleuStatistic:
    """Corpus BLEU-n recomputed from per-image n-gram counts (pycocoevalcap BleuScorer's `ctest`)."""

    test_len: np.ndarray  # (images,) hypothesis lengths
    ref_len: np.ndarray  # (images,) "closest" reference lengths
    guess: np.ndarray  # (images, 4) candidate n-gram counts
    correct: np.ndarray  # (images, 4) clipped matching n-gram counts
    order: int  # 1..4

    def replicate(self, weights: np.ndarray) -> np.ndarray:
        """Corpus BLEU-`order` of every resample."""
        return compute_corpus_bleu(
            weights @ self.test_len, weights @ self.ref_len, weights @ self.guess, weights @ self.correct
        )[:, self.order - 1]


def compute_corpus_bleu(
    test_len: np.ndarray, ref_len: np.ndarray, guess: np.ndarray, correct: np.ndarray
) -> np.ndarray:
    """Corpus BLEU-1..4 from summed counts, vectorised over resamples.

    Hand-written (the library only scores its own stored sentences), but it mirrors
    `BleuScorer.compute_score` line by line, constants included; a test checks equality.

    Args:
        test_len: (resamples,) total hypothesis length.
        ref_len: (resamples,) total effective reference length.
        guess: (resamples, 4) total candidate n-grams.
        correct: (resamples, 4) total clipped matches.

    Returns:
        (resamples, 4) BLEU-1..4.
    """
    precisions = (correct + BLEU_TINY) / (guess + BLEU_SMALL)
    orders = np.arange(1, guess.shape[1] + 1)
    bleus = np.cumprod(precisions, axis=1) ** (1.0 / orders)
    ratio = (test_len + BLEU_TINY) / (ref_len + BLEU_SMALL)
    brevity = np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
    return bleus * brevity[:, None]


def draw_weights(n_images: int, n_samples: int, seed: int) -> np.ndarray:
    """Resample images with replacement: a (n_samples, n_images) matrix of draw counts.

    Args:
        n_images: number of images scored.
        n_samples: number of bootstrap resamples.
        seed: seed of numpy's default generator, so reruns give the same CIs.

    Returns:
        Integer counts; every row sums to n_images.
    """
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_samples).astype(float)


def compute_percentile_ci(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval (NaN resamples ignored).

    Args:
        replicates: the statistic over resamples.
        level: e.g. 0.95.

    Returns:
        (low, high).
    """
    tail = (1 - level) / 2
    low, high = np.nanquantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


@dataclass
class PairedResult:
    """b - a on the full set, its bootstrap CI and a two-sided p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float


def compare_paired(
    value_a: float, value_b: float, replicates_a: np.ndarray, replicates_b: np.ndarray, level: float
) -> PairedResult:
    """Paired bootstrap test of b - a, both systems scored on the same resamples.

    The p-value shifts the bootstrap distribution of the difference to the null (difference 0) and
    counts resamples at least as far from the observed difference as the observed difference is from
    zero (two-sided; +1 in numerator and denominator so p is never exactly 0).

    Args:
        value_a: metric of system a on all images.
        value_b: metric of system b on all images.
        replicates_a: a's metric on each resample.
        replicates_b: b's metric on the same resamples.
        level: confidence level of the CI.

    Returns:
        The difference, its percentile CI and the p-value.
    """
    diff = value_b - value_a
    deltas = replicates_b - replicates_a
    deltas = deltas[~np.isnan(deltas)]
    low, high = compute_percentile_ci(deltas, level)
    extreme = np.count_nonzero(np.abs(deltas - diff) >= abs(diff) - 1e-12)
    return PairedResult(float(diff), low, high, float((extreme + 1) / (len(deltas) + 1)))
