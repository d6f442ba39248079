"""Seeded, reproducible assignment of trials to participants.

Trial order follows a balanced Latin square (Williams design) across participants, separately for the
task block and the rating block. Task trials come first because they show the caption only: a
participant who had already seen the image in a rating trial could answer from memory. Which caption
is "Description 1" is randomised per rating trial, balanced within each participant; which system's
caption a task question shows alternates across questions and participants, so both are balanced.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from altcap.study.config import AttentionCheck
from altcap.study.practice import PRACTICE_EXAMPLE_IMAGE


@dataclass(frozen=True)
class TrialPlan:
    """One step a participant sees; `base_position` is 1 or 2 for rating and verify trials, else 0.

    `task_system` is the system whose caption a single-caption trial (task or verify) shows.
    """

    kind: str
    image: str = ""
    question_id: str = ""
    base_position: int = 0
    task_system: str = ""
    attention_index: int = -1


@dataclass(frozen=True)
class StudyPlanInputs:
    """Everything the assignment depends on (all of it frozen in the study design)."""

    images: list[str]
    practice_images: list[str] = field(default_factory=list)
    question_ids: list[str] = field(default_factory=list)
    question_images: dict[str, str] = field(default_factory=dict)
    n_practice_trials: int = 1
    attention_checks: list[AttentionCheck] = field(default_factory=list)
    has_ratings: bool = True
    seed: int = 0


def build_balanced_latin_square(n_conditions: int) -> list[list[int]]:
    """Rows of a Williams balanced Latin square: each item precedes each other item equally often.

    Args:
        n_conditions: number of items to order.

    Returns:
        n rows (n even) or 2n rows (n odd; the mirrored rows restore first-order carry-over balance).
    """
    if n_conditions <= 0:
        return [[]]
    # Williams' first row: 0, 1, n-1, 2, n-2, ...; the other rows add r modulo n.
    first = [0, *[((i + 1) // 2) if i % 2 == 1 else (n_conditions - i // 2) for i in range(1, n_conditions)]]
    rows = [[(x + r) % n_conditions for x in first] for r in range(n_conditions)]
    if n_conditions % 2 == 1:
        rows += [list(reversed(row)) for row in rows]
    return rows


def count_latin_rows(inputs: StudyPlanInputs) -> int:
    """Number of distinct orders before the assignment repeats (the export's latin_square_row range)."""
    n_rating = len(build_balanced_latin_square(len(inputs.images) if inputs.has_ratings else 0))
    n_task = len(build_balanced_latin_square(len(inputs.question_ids)))
    return max(n_rating, n_task, 1)


def draw_balanced_positions(n_trials: int, rng: random.Random) -> list[int]:
    """Base-caption positions (1/2) for n trials: half each (odd n: one extra, random), shuffled."""
    positions = [1, 2] * (n_trials // 2)
    if n_trials % 2:
        positions.append(rng.choice([1, 2]))
    rng.shuffle(positions)
    return positions


def _order_block(n_items: int, row: int) -> list[int]:
    square = build_balanced_latin_square(n_items)
    return square[row % len(square)] if n_items else []


def plan_participant(inputs: StudyPlanInputs, participant_index: int) -> list[TrialPlan]:
    """The full, ordered trial list of the participant with this 0-based index.

    Args:
        inputs: the frozen design.
        participant_index: order of invitation (selects the Latin-square row and the RNG stream).

    Returns:
        Practice trials, then task trials, then rating trials, with attention checks inserted.
    """
    rng = random.Random(f"{inputs.seed}:{participant_index}")
    row = participant_index
    main: list[TrialPlan] = []
    for q_index in _order_block(len(inputs.question_ids), row):
        qid = inputs.question_ids[q_index]
        system = ("base", "finetuned")[(q_index + participant_index) % 2]
        main.append(TrialPlan("task", inputs.question_images[qid], qid, task_system=system))
    rating_order = _order_block(len(inputs.images), row) if inputs.has_ratings else []
    for image_index, position in zip(
        rating_order, draw_balanced_positions(len(rating_order), rng), strict=True
    ):
        main.append(TrialPlan("rating", inputs.images[image_index], base_position=position))
    checks = sorted(enumerate(inputs.attention_checks), key=lambda pair: pair[1].after_trial, reverse=True)
    for check_index, check in checks:
        main.insert(min(check.after_trial, len(main)), TrialPlan("attention", attention_index=check_index))
    practice: list[TrialPlan] = []
    if inputs.has_ratings and inputs.images:
        # Never a study image (it would come back as a counted trial): set-aside images, else the example.
        pool = inputs.practice_images or [PRACTICE_EXAMPLE_IMAGE]
        for p in range(inputs.n_practice_trials):
            image = pool[p % len(pool)]
            practice.append(TrialPlan("practice", image, base_position=rng.choice([1, 2])))
    return practice + main


def plan_verifier(inputs: StudyPlanInputs, verifier_index: int) -> list[TrialPlan]:
    """The ordered verify trials of a sighted verifier: every caption once, next to its image.

    Each page shows one caption, so a verifier judges it on its own rather than against the other
    system's caption. All images' first captions come before any second caption (a repeat image is
    never the next page), each block in its own seeded random order; which system comes first is
    balanced within the verifier, as for participants' caption positions.

    Args:
        inputs: the frozen design.
        verifier_index: 0-based order of the verifier's invitation (selects the RNG stream).

    Returns:
        2 x n_images verify trials; `base_position` = 1 when the base caption is shown first.
    """
    rng = random.Random(f"{inputs.seed}:verifier:{verifier_index}")
    base_first = draw_balanced_positions(len(inputs.images), rng)
    blocks: list[list[TrialPlan]] = []
    for shown in (1, 2):
        block = [
            TrialPlan(
                "verify",
                image,
                base_position=position,
                task_system="base" if position == shown else "finetuned",
            )
            for image, position in zip(inputs.images, base_first, strict=True)
        ]
        rng.shuffle(block)
        blocks.append(block)
    second = blocks[1]
    if len(second) > 1 and second[0].image == blocks[0][-1].image:
        # Same image on consecutive pages invites a direct comparison of the two captions.
        second[0], second[1] = second[1], second[0]
    return blocks[0] + second
