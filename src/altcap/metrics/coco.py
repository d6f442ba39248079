"""COCO caption metrics through pycocoevalcap's own scorers (PTB tokeniser, BLEU, METEOR, ROUGE-L,
CIDEr-D, SPICE), plus the per-image sufficient statistics the bootstrap needs.

pycocoevalcap's `Cider` scorer is CIDEr-D (clipped n-gram counts, Gaussian length penalty,
sigma 6), which is what the COCO leaderboard reports as "CIDEr"; we name it CIDEr-D.

SPICE needs the Stanford CoreNLP 3.6.0 jars (`stanford-corenlp-3.6.0.jar` and
`stanford-corenlp-3.6.0-models.jar`) in pycocoevalcap's `spice/lib/` folder. pycocoevalcap
downloads them on first use, which fails offline after a long network timeout, so we check for the
jars first and record SPICE as missing (with the fix) when they are absent. To enable SPICE, on a
machine with internet run `python -m pycocoevalcap.spice.get_stanford_models`, or download
http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip and copy the two jars
into that `lib/` folder.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from altcap.cli_output import hide_child_chatter
from altcap.metrics.bootstrap import BleuStatistic, MeanStatistic, Statistic

BLEU_NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
COCO_METRICS = (*BLEU_NAMES, "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
METEOR_CHUNK_LINES = 200  # EVAL lines per write, so neither side of the Java pipe fills up


@dataclass
class CocoResult:
    """One system's COCO scores against one reference set."""

    corpus: dict[str, float] = field(default_factory=dict)
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    statistics: dict[str, Statistic] = field(default_factory=dict)


def tokenize_captions(groups: list[list[list[str]]]) -> list[list[list[str]]]:
    """PTB-tokenise several groups of per-image caption lists in one Java call (JVM start is slow).

    Whitespace is collapsed first because the tokeniser works line by line and a stray line break
    would shift every later caption; empty captions bypass the tokeniser for the same reason (an
    empty last line is dropped by it).

    Args:
        groups: e.g. [references, system A captions, ...], each a list (per image) of caption lists.

    Returns:
        The same nesting with tokenised, lower-cased, punctuation-free captions.
    """
    request: dict[tuple[int, int, int], list[dict[str, str]]] = {}
    for g, group in enumerate(groups):
        for i, captions in enumerate(group):
            for j, caption in enumerate(captions):
                text = " ".join(caption.split())
                if text:
                    request[(g, i, j)] = [{"caption": text}]
    with hide_child_chatter(r"^PTBTokenizer tokenized \d+ tokens"):
        tokenized = PTBTokenizer().tokenize(request) if request else {}
    return [
        [
            [tokenized[(g, i, j)][0] if (g, i, j) in tokenized else "" for j in range(len(captions))]
            for i, captions in enumerate(group)
        ]
        for g, group in enumerate(groups)
    ]


def score_bleu(gts: dict[int, list[str]], res: dict[int, list[str]], result: CocoResult) -> None:
    """BLEU-1..4 exactly as `pycocoevalcap.bleu.Bleu` (option 'closest'), keeping per-image counts."""
    scorer = BleuScorer(n=4)
    for key in gts:
        scorer += (res[key][0], gts[key])
    corpus, per_image = scorer.compute_score(option="closest", verbose=0)
    test_len = np.array([c["testlen"] for c in scorer.ctest], dtype=float)
    ref_len = np.array(
        [scorer._single_reflen(c["reflen"], "closest", c["testlen"]) for c in scorer.ctest], dtype=float
    )
    guess = np.array([c["guess"] for c in scorer.ctest], dtype=float)
    correct = np.array([c["correct"] for c in scorer.ctest], dtype=float)
    for k, name in enumerate(BLEU_NAMES):
        result.corpus[name] = float(corpus[k])
        result.per_image[name] = np.array(per_image[k])
        result.statistics[name] = BleuStatistic(test_len, ref_len, guess, correct, k + 1)


@dataclass
class MeteorStatistic:
    """Corpus METEOR of resamples: the jar scores summed per-image statistics.

    METEOR's corpus score is not the mean of sentence scores; the jar adds the per-segment
    statistics and scores the sum (verified: summing in Python reproduces pycocoevalcap's value).
    """

    meteor: Meteor
    stats: np.ndarray  # (images, n_stats)

    def replicate(self, weights: np.ndarray) -> np.ndarray:
        """Ask the METEOR jar for the score of each resample's summed statistics."""
        lines = ["EVAL ||| " + " ".join(repr(float(x)) for x in row) for row in weights @ self.stats]
        scores: list[float] = []
        with self.meteor.lock:
            process = self.meteor.meteor_p
            for start in range(0, len(lines), METEOR_CHUNK_LINES):
                chunk = lines[start : start + METEOR_CHUNK_LINES]
                process.stdin.write(("\n".join(chunk) + "\n").encode())
                process.stdin.flush()
                for _ in chunk:
                    process.stdout.readline()  # the single "segment" score
                    scores.append(float(process.stdout.readline().strip()))
        return np.array(scores)


def score_meteor(meteor: Meteor, gts: dict, res: dict, result: CocoResult) -> None:
    """METEOR exactly as `Meteor.compute_score` (same SCORE/EVAL protocol), keeping the statistics."""
    with meteor.lock:
        stats = [meteor._stat(res[key][0], gts[key]) for key in gts]
        process = meteor.meteor_p
        process.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        process.stdin.flush()
        per_image = [float(process.stdout.readline().strip()) for _ in stats]
        corpus = float(process.stdout.readline().strip())
    result.corpus["METEOR"] = corpus
    result.per_image["METEOR"] = np.array(per_image)
    matrix = np.array([[float(x) for x in s.split()] for s in stats])
    result.statistics["METEOR"] = MeteorStatistic(meteor, matrix)


def store_mean_metric(name: str, corpus: float, per_image: np.ndarray, result: CocoResult) -> None:
    """Record a metric whose corpus value is the mean of its per-image scores."""
    result.corpus[name] = float(corpus)
    result.per_image[name] = np.asarray(per_image, dtype=float)
    result.statistics[name] = MeanStatistic(result.per_image[name])


def find_spice_problem() -> str | None:
    """Why SPICE cannot run here (None when the jars are in place), with the fix."""
    spec = importlib.util.find_spec("pycocoevalcap.spice.spice")
    lib_dir = Path(spec.origin).parent / "lib" if spec and spec.origin else None
    if lib_dir is None:
        return "pycocoevalcap.spice is not installed; `pip install pycocoevalcap`"
    absent = [jar for jar in CORENLP_JARS if not (lib_dir / jar).is_file()]
    if not absent:
        return None
    return (
        f"Stanford CoreNLP 3.6.0 jars not found in {lib_dir} ({', '.join(absent)}); pycocoevalcap "
        "downloads them on first use, which needs internet. To enable SPICE run "
        "`python -m pycocoevalcap.spice.get_stanford_models` on a connected machine, or copy both jars "
        "from http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip into that folder."
    )


def score_spice(gts: dict, res: dict, result: CocoResult) -> str | None:
    """SPICE via pycocoevalcap's scorer; returns why it failed (None on success)."""
    from pycocoevalcap.spice.spice import Spice

    try:
        corpus, per_image = Spice().compute_score(gts, res)
    except (subprocess.CalledProcessError, OSError, ValueError, json.JSONDecodeError) as err:
        return f"the SPICE jar failed ({err}); run it by hand to see Java's error (needs ~8 GB heap)"
    store_mean_metric("SPICE", corpus, np.array([s["All"]["f"] for s in per_image], dtype=float), result)
    return None


def score_coco(
    references: list[list[str]], predictions: list[str], meteor: Meteor, spice: bool
) -> tuple[CocoResult, str | None]:
    """All COCO metrics for one system against tokenised references.

    Args:
        references: per image, its tokenised reference captions.
        predictions: per image, the tokenised prediction.
        meteor: a running METEOR scorer, shared because its JVM takes seconds to start.
        spice: try SPICE (the caller has checked the jars).

    Returns:
        The scores, and why SPICE is missing (None when computed or not asked for).
    """
    gts = dict(enumerate(references))
    res = {i: [p] for i, p in enumerate(predictions)}
    result = CocoResult()
    score_bleu(gts, res, result)
    score_meteor(meteor, gts, res, result)
    store_mean_metric("ROUGE-L", *Rouge().compute_score(gts, res), result)
    store_mean_metric("CIDEr-D", *Cider().compute_score(gts, res), result)
    spice_problem = score_spice(gts, res, result) if spice else None
    return result, spice_problem
