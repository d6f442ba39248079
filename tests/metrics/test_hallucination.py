"""CHAIR-style object hallucination: vocabulary, matching, planted hallucinations, user extension."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from altcap.metrics.bootstrap import draw_weights
from altcap.metrics.hallucination import (
    SHIPPED_SYNONYMS,
    ObjectVocabularyError,
    find_objects,
    load_object_vocabulary,
    pluralise,
    score_hallucination,
)


@pytest.fixture(scope="module")
def vocabulary():
    return load_object_vocabulary()


def test_shipped_list_has_the_80_coco_categories() -> None:
    data = json.loads(SHIPPED_SYNONYMS.read_text())
    assert len(data["categories"]) == 80 and "Rohrbach" in data["source"]
    assert {"person", "dog", "hot dog", "teddy bear", "toothbrush"} <= set(data["categories"])


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("A man eats a hot dog next to two dogs.", ["person", "hot dog", "dog"]),
        ("A baby elephant follows a baby.", ["elephant", "person"]),
        ("Three policemen sit on benches with knives", ["person", "bench", "knife"]),
        ("A teddy bear on a toilet seat", ["teddy bear", "toilet"]),
        ("Players near home plate", ["person"]),
        ("Puppies and ponies; a stop sign", ["dog", "horse", "stop sign"]),
        ("A red shirt and blue jeans", []),
    ],
)
def test_objects_are_found_per_mention(vocabulary, caption: str, expected: list[str]) -> None:
    assert find_objects(caption, vocabulary) == expected


def test_plurals() -> None:
    assert {"benches", "buses", "puppies", "women"} <= pluralise("bench") | pluralise("bus") | pluralise(
        "puppy"
    ) | pluralise("woman")
    assert pluralise("sheep") == {"sheep"}


def test_planted_hallucinations_are_counted(vocabulary) -> None:
    references = [
        ["A dog runs on the grass.", "A brown puppy playing outside."],
        ["Two children eat ice cream on a bench.", "Kids with ice cream in a park."],
        ["A man rides a bicycle down the street.", "A cyclist on a city road."],
    ]
    captions = [
        "Two dogs run on the grass with a frisbee.",  # frisbee invented; "dogs" matches "puppy"
        "A girl sits on a bench.",  # nothing invented (girl -> person, children -> person)
        "A man rides a horse past a car and a bus.",  # horse, car, bus invented
    ]
    scores = score_hallucination(captions, references, vocabulary)
    np.testing.assert_array_equal(scores.mentions, [2, 2, 4])
    np.testing.assert_array_equal(scores.hallucinated, [1, 0, 3])
    assert scores.objects == [["frisbee"], [], ["bus", "car", "horse"]]
    corpus = scores.corpus()
    assert corpus["CHAIR-i"] == pytest.approx(4 / 8) and corpus["CHAIR-s"] == pytest.approx(2 / 3)
    all_images = np.ones((1, 3))
    for name, statistic in scores.statistics().items():
        assert statistic.replicate(all_images)[0] == pytest.approx(corpus[name])
    replicates = scores.statistics()["CHAIR-i"].replicate(draw_weights(3, 50, seed=0))
    assert np.nanmin(replicates) >= 0 and np.nanmax(replicates) <= 1


def test_user_file_extends_the_vocabulary(tmp_path: Path) -> None:
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {"categories": {"dog": ["wolfhound"], "tree": ["tree", "oak"]}, "phrases": {"hot dog": None}}
        )
    )
    vocabulary = load_object_vocabulary(extra)
    assert find_objects("A wolfhound under oak trees eats a hot dog", vocabulary) == ["dog", "tree", "tree"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"phrases": {"red panda": "panda"}}))
    with pytest.raises(ObjectVocabularyError, match=r"bad.json: phrases\['red panda'\] = 'panda'"):
        load_object_vocabulary(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ObjectVocabularyError, match=r"broken\.json: cannot read"):
        load_object_vocabulary(broken)
