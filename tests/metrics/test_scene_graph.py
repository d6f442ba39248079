"""Offline scene-graph F1 (not SPICE): tuples of simple sentences, F1 of identical and unrelated captions."""

from __future__ import annotations

import numpy as np
import pytest

from altcap.metrics.scene_graph import (
    DEFAULT_SPACY_MODEL,
    SCENE_GRAPH_LABEL,
    SceneGraphExtractor,
    compute_tuple_f1,
    describe_spice_agreement,
    find_scene_graph_problem,
    graph_to_tuples,
    score_scene_graph,
)


@pytest.fixture(scope="module")
def extractor() -> SceneGraphExtractor:
    problem = find_scene_graph_problem(DEFAULT_SPACY_MODEL)
    assert problem is None, problem  # a dependency of altcap: its absence is a failure, not a skip
    return SceneGraphExtractor()


def test_label_says_not_spice() -> None:
    assert "not SPICE" in SCENE_GRAPH_LABEL and "unknown" in SCENE_GRAPH_LABEL


def test_tuples_of_simple_sentences(extractor: SceneGraphExtractor) -> None:
    dog, men, car = extractor.extract(
        ["A brown dog is running on the grass.", "Two men  are sitting on a bench.", "It is a red car."]
    )
    assert dog == {("dog",), ("grass",), ("dog", "brown"), ("dog", "run on", "grass")}
    assert {("man",), ("bench",), ("man", "two"), ("man", "sit on", "bench")} == men
    assert ("it",) not in car and ("car", "red") in car
    assert extractor.extract([""]) == [frozenset()]


def test_pronouns_and_determiners_are_not_tuples() -> None:
    graph = {
        "entities": [
            {"lemma_head": "it", "modifiers": []},
            {"lemma_head": "Ball", "modifiers": [{"dep": "det", "lemma_span": "a"}]},
        ],
        "relations": [{"subject": 0, "object": 1, "lemma_relation": "hold"}],
    }
    assert graph_to_tuples(graph) == {("ball",)}


def test_f1_of_identical_related_and_unrelated_captions(extractor: SceneGraphExtractor) -> None:
    references = extractor.extract_references(
        [
            ["A brown dog is running on the grass.", "A dog runs across a green lawn."],
            ["Two men are sitting on a bench.", "Two men sit on a wooden bench in a park."],
        ]
    )
    identical = extractor.extract(["A brown dog is running on the grass.", "Two men are sitting on a bench."])
    related = extractor.extract(["A black dog is running on the grass.", "A man sits on a bench."])
    unrelated = extractor.extract(["A red car parked by a tall building.", "A plate of pasta with sauce."])
    f1_identical = score_scene_graph(identical, references)
    f1_related = score_scene_graph(related, references)
    f1_unrelated = score_scene_graph(unrelated, references)
    self_refs = extractor.extract_references([["A brown dog is running on the grass."]])
    assert score_scene_graph(identical[:1], self_refs)[0] == 1.0
    assert np.all(f1_unrelated == 0.0)
    assert np.all(f1_identical > f1_related) and np.all(f1_related > 0.2)


def test_f1_edge_cases_and_spice_agreement() -> None:
    assert np.isnan(compute_tuple_f1(frozenset(), frozenset()))
    assert compute_tuple_f1(frozenset(), frozenset({("dog",)})) == 0.0
    assert compute_tuple_f1(frozenset({("dog",), ("cat",)}), frozenset({("dog",)})) == pytest.approx(2 / 3)
    assert describe_spice_agreement(np.ones(5), None)["status"].startswith("unknown")
    measured = describe_spice_agreement(np.arange(6.0), np.arange(6.0) * 2)
    assert measured["kendall_tau"] == pytest.approx(1.0) and measured["n_images"] == 6
