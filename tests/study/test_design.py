"""Balanced Latin square and within-participant position balance."""

from __future__ import annotations

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
