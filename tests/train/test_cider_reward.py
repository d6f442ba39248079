"""CorpusCiderD against pycocoevalcap's CIDEr-D, and the idf it takes from its corpus."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from altcap.train.cider_reward import CorpusCiderD, simple_tokenize

REFERENCES = [
    ["A dog runs across the green grass.", "a brown dog is running on grass", "The dog plays outside"],
    ["Two children play on the beach", "kids playing in the sand near the sea", "two kids at the beach"],
    ["A red car parked on a street", "a red car", "a car is parked by the road"],
    ["A man rides a bike down a hill", "a cyclist on a mountain trail", "man riding a bicycle"],
]
CAPTIONS = ["a dog running on the grass", "two kids play on the beach", "a blue car", "a man on a bike"]


def test_simple_tokenize_drops_punctuation_and_case() -> None:
    assert simple_tokenize("A Dog, running!  Fast.") == "a dog running fast"
    assert simple_tokenize("the dog's ball") == "the dog's ball"


def test_scores_equal_pycocoevalcap_when_the_corpus_is_the_scored_set() -> None:
    gts = {i: [simple_tokenize(r) for r in refs] for i, refs in enumerate(REFERENCES)}
    res = {i: [simple_tokenize(c)] for i, c in enumerate(CAPTIONS)}
    corpus_mean, expected = Cider().compute_score(gts, res)
    scorer = CorpusCiderD(REFERENCES)
    ours = scorer.score_batch(CAPTIONS, REFERENCES)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert np.mean(ours) == pytest.approx(corpus_mean)
    assert ours[0] > ours[2] > 0  # a near paraphrase beats a wrong colour


def test_idf_comes_from_the_corpus_not_the_batch() -> None:
    small = CorpusCiderD(REFERENCES[:1])
    large = CorpusCiderD(REFERENCES)
    # One image as corpus: log(1) - log(df) = 0 for every n-gram it has, so nothing scores.
    assert small.score(CAPTIONS[0], REFERENCES[0]) == 0.0
    assert large.score(CAPTIONS[0], REFERENCES[0]) > 0.0
    assert large.score(CAPTIONS[0], REFERENCES[0]) == large.score_batch(CAPTIONS[:1], REFERENCES[:1])[0]


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CorpusCiderD([])
    with pytest.raises(ValueError, match="2 captions but 1 reference"):
        CorpusCiderD(REFERENCES).score_batch(CAPTIONS[:2], REFERENCES[:1])
