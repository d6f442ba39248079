"""Balanced Latin square and within-participant position balance."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from altcap.study.config import AttentionCheck
from altcap.study.design import StudyPlanInputs, build_balanced_latin_square, plan_participant


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8])
def test_latin_square_is_balanced_for_position_and_carry_over(n: int) -> None:
    rows = build_balanced_latin_square(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(row) == list(range(n)) for row in rows)
    per_position = [Counter(row[p] for row in rows) for p in range(n)]
    assert all(set(c.values()) == {len(rows) // n} for c in per_position)
    pairs = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
    assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1  # each ordered pair equally often


def test_participants_cycle_through_the_square_and_positions_are_balanced() -> None:
    images = [f"img{i}.png" for i in range(6)]
    inputs = StudyPlanInputs(images=images, seed=7)
    square = build_balanced_latin_square(6)
    for index in range(12):
        plan = plan_participant(inputs, index)
        ratings = [t for t in plan if t.kind == "rating"]
        assert [images.index(t.image) for t in ratings] == square[index % 6]
        assert Counter(t.base_position for t in ratings) == {1: 3, 2: 3}
    assert plan_participant(inputs, 3) == plan_participant(inputs, 3)  # seeded: reproducible
    assert plan_participant(inputs, 3) != plan_participant(StudyPlanInputs(images=images, seed=8), 3)


def test_task_block_first_systems_alternate_and_attention_inserted() -> None:
    inputs = StudyPlanInputs(
        images=["a", "b"],
        question_ids=["q1", "q2", "q3", "q4"],
        question_images={"q1": "a", "q2": "a", "q3": "b", "q4": "b"},
        attention_checks=[AttentionCheck(after_trial=5, question="?", choices=["x", "y"], answer="x")],
    )
    systems = Counter()
    for index in range(4):
        plan = plan_participant(inputs, index)
        kinds = [t.kind for t in plan]
        assert kinds == ["practice", "task", "task", "task", "task", "rating", "attention", "rating"]
        tasks = [t for t in plan if t.kind == "task"]
        assert Counter(t.task_system for t in tasks) == {"base": 2, "finetuned": 2}
        systems.update((t.question_id, t.task_system) for t in tasks)
    assert set(systems.values()) == {2}  # every question shown with each system equally often


@pytest.mark.parametrize("n_images", [1, 4, 7])
def test_verifier_plan_shows_each_caption_once_and_never_an_image_twice_in_a_row(n_images: int) -> None:
    from altcap.study.design import plan_verifier

    inputs = StudyPlanInputs(images=[f"img{i}" for i in range(n_images)], seed=3)
    plans = [plan_verifier(inputs, v) for v in range(6)]
    for plan in plans:
        assert all(t.kind == "verify" for t in plan)
        assert sorted((t.image, t.task_system) for t in plan) == sorted(
            (f"img{i}", s) for i in range(n_images) for s in ("base", "finetuned")
        )
        assert sorted(t.image for t in plan[:n_images]) == sorted(inputs.images)  # first block
        first_system = {t.image: t.task_system for t in plan[:n_images]}
        assert all(first_system[t.image] == ("base" if t.base_position == 1 else "finetuned") for t in plan)
        base_first = sum(s == "base" for s in first_system.values())
        assert abs(2 * base_first - n_images) <= 1  # balanced within the verifier
        assert all(a.image != b.image for a, b in itertools.pairwise(plan)) or n_images == 1
    assert plan_verifier(inputs, 2) == plans[2]  # seeded: reproducible
    if n_images > 3:
        assert len({tuple(t.image for t in p) for p in plans}) > 1  # orders differ across verifiers
