"""CorpusCiderD against pycocoevalcap's CIDEr-D, and the idf it takes from its corpus."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from altcap.train.cider_reward import CorpusCiderD, add_length_term, compute_length_term, simple_tokenize

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


def test_length_term_is_the_capped_share_of_reference_length() -> None:
    references = ["a dog runs on the grass", "the brown dog runs"]  # 6 and 4 words: mean 5
    assert compute_length_term("a dog", references) == pytest.approx(2 / 5)
    assert compute_length_term("a dog, runs; fast!", references) == pytest.approx(4 / 5)
    assert compute_length_term("a brown dog runs on green grass today", references) == 1.0
    assert compute_length_term("", references) == 0.0


def test_length_aware_reward_prefers_the_longer_of_two_equal_cider_captions() -> None:
    scorer = CorpusCiderD(REFERENCES)
    short, longer = "zebra", "zebra beside giraffe"  # no word the dog references have
    captions, references = [short, longer], [REFERENCES[0], REFERENCES[0]]
    cider = scorer.score_batch(captions, references)
    assert cider[0] == cider[1]  # equally CIDEr-D
    plain = add_length_term(cider, captions, references, weight=0.0)
    assert plain == cider
    aware = add_length_term(cider, captions, references, weight=0.5)
    assert aware[1] > aware[0] and aware[0] > cider[0]
    # at lambda = 0 the reward is CIDEr-D exactly, on captions that do score
    real = scorer.score_batch(CAPTIONS, REFERENCES)
    assert add_length_term(real, CAPTIONS, REFERENCES, 0.0) == real and max(real) > 0
