"""CIDEr-D of single captions against one fixed corpus's document frequencies: the SCST reward.

pycocoevalcap's `CiderScorer` takes its document frequencies (and log corpus size) from the
references it is handed, which during training is one batch of images: the idf weights would then
change from batch to batch and mean little. Written here so the frequencies come from the whole
training split, once. With the corpus equal to the scored set, `score` equals pycocoevalcap's
CIDEr-D image for image (tests/train/test_cider_reward.py), including its quirks: a caption's
length for the Gaussian penalty is its bigram count, and n-grams are counted by `precook`.

Captions are tokenised by `simple_tokenize` (lower case, punctuation dropped), not the Java PTB
tokeniser, which is far too slow to start once per training step; final scores still come from
`altcap evaluate`.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

NGRAMS = 4
SIGMA = 6.0
_PUNCTUATION = re.compile(r"[^\w\s']|_")


def simple_tokenize(caption: str) -> str:
    """Lower case, punctuation replaced by spaces, whitespace collapsed (close to the PTB result)."""
    return " ".join(_PUNCTUATION.sub(" ", caption.lower()).split())


def precook(caption: str, n: int = NGRAMS) -> Counter[tuple[str, ...]]:
    """Counts of every 1..n-gram of a tokenised caption (pycocoevalcap's `precook`; not imported so
    training does not need pycocoevalcap, which GPU images often lack)."""
    words = caption.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


_Vector = tuple[list[dict[tuple[str, ...], float]], list[float], int]


class CorpusCiderD:
    """CIDEr-D with idf from a fixed reference corpus.

    Args:
        corpus: one list of reference captions per image (e.g. every training image's captions).
    """

    def __init__(self, corpus: Iterable[Sequence[str]]):
        self.document_frequency: Counter[tuple[str, ...]] = Counter()
        size = 0
        for references in corpus:
            size += 1
            ngrams = set()
            for reference in references:
                ngrams.update(precook(simple_tokenize(reference), NGRAMS))
            self.document_frequency.update(ngrams)
        if size == 0:
            raise ValueError("CorpusCiderD needs at least one image's references")
        self.log_corpus_size = math.log(float(size))
        self._reference_vectors: dict[tuple[str, ...], list[_Vector]] = {}

    def _vector(self, caption: str) -> _Vector:
        """tf-idf vectors per n-gram order, their norms, and the bigram count used as length."""
        vectors: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(NGRAMS)]
        norms = [0.0] * NGRAMS
        length = 0
        for ngram, count in precook(caption, NGRAMS).items():
            order = len(ngram) - 1
            weight = count * (self.log_corpus_size - math.log(max(1.0, self.document_frequency[ngram])))
            vectors[order][ngram] = weight
            norms[order] += weight * weight
            if order == 1:  # pycocoevalcap's length: bigrams, kept for identical scores
                length += count
        return vectors, [math.sqrt(n) for n in norms], length

    def _references(self, references: Sequence[str]) -> list[_Vector]:
        key = tuple(references)
        if key not in self._reference_vectors:
            self._reference_vectors[key] = [self._vector(simple_tokenize(r)) for r in references]
        return self._reference_vectors[key]

    def score(self, caption: str, references: Sequence[str]) -> float:
        """CIDEr-D (x10 scale, as reported) of one caption against its image's references."""
        hypothesis, hypothesis_norms, hypothesis_length = self._vector(simple_tokenize(caption))
        total = 0.0
        refs = self._references(references)
        for vectors, norms, length in refs:
            penalty = math.exp(-((hypothesis_length - length) ** 2) / (2 * SIGMA**2))
            for order in range(NGRAMS):
                overlap = sum(
                    min(weight, vectors[order].get(ngram, 0.0)) * vectors[order].get(ngram, 0.0)
                    for ngram, weight in hypothesis[order].items()
                )
                if hypothesis_norms[order] and norms[order]:
                    overlap /= hypothesis_norms[order] * norms[order]
                total += overlap * penalty
        return total / NGRAMS / len(refs) * 10.0

    def score_batch(self, captions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        """`score` of each caption against the references at the same index."""
        if len(captions) != len(references):
            raise ValueError(f"{len(captions)} captions but {len(references)} reference lists")
        return [self.score(c, r) for c, r in zip(captions, references, strict=True)]


def compute_length_term(caption: str, references: Sequence[str]) -> float:
    """Caption words over the references' mean words, capped at 1 (0 for an empty caption).

    Why this form: SCST raises CIDEr-D partly by shortening captions (altcap-mini: 9.1 vs 11.1 words on
    Flickr8k test), while blind and low-vision readers rate longer descriptions higher (Kreiss et al.
    2022: length alone r = 0.60 with the mean rating). A term that grows with length up to the
    references' own length, and not beyond, counters that truncation the way BLEU's brevity penalty
    does (only shortfalls are penalised) without paying for padding past what people wrote. Relative
    to the image's references, so images that need long descriptions ask for long captions. Bounded
    in [0, 1], so the weight reads as "CIDEr-D points per full reference length".
    """
    reference_words = [len(simple_tokenize(r).split()) for r in references]
    target = sum(reference_words) / max(len(reference_words), 1)
    if target <= 0:
        return 0.0
    return min(1.0, len(simple_tokenize(caption).split()) / target)


def add_length_term(
    scores: Sequence[float], captions: Sequence[str], references: Sequence[Sequence[str]], weight: float
) -> list[float]:
    """The length-aware SCST reward: CIDEr-D + weight * `compute_length_term` (CIDEr-D itself at 0).

    Args:
        scores: CIDEr-D of each caption.
        captions: the captions.
        references: each caption's reference captions.
        weight: lambda >= 0.

    Returns:
        One reward per caption.
    """
    if weight == 0:
        return list(scores)
    return [
        score + weight * compute_length_term(caption, refs)
        for score, caption, refs in zip(scores, captions, references, strict=True)
    ]
