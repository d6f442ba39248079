"""Scoring of task answers (numbers in words, accents, not-stated spellings)."""

from __future__ import annotations

import pytest

from altcap.study.scoring import NOT_STATED, AnswerKey, is_not_stated, score_answer


@pytest.mark.parametrize(
    ("answer", "key", "expected"),
    [
        ("Three.", AnswerKey(kind="number", answer="3"), True),
        ("3", AnswerKey(kind="number", answer="three"), True),
        ("twenty-one", AnswerKey(kind="number", answer="21"), True),
        ("four", AnswerKey(kind="number", answer="3"), False),
        ("  RED!! ", AnswerKey(kind="text", answer="red"), True),
        ("crimson", AnswerKey(kind="text", answer="red", accepted=["Crimson"]), True),
        ("Café Nero", AnswerKey(kind="text", answer="cafe nero"), True),
        ("blue", AnswerKey(kind="choice", answer="red"), False),
        ("The description does not say.", AnswerKey(kind="choice", answer="red"), False),
        ("does not say", AnswerKey(kind="choice", answer=NOT_STATED), True),
        (NOT_STATED, AnswerKey(kind="choice", answer="Does not say"), True),
        ("red", AnswerKey(kind="choice", answer=NOT_STATED), False),
    ],
)
def test_score_answer(answer: str, key: AnswerKey, expected: bool) -> None:
    assert score_answer(answer, key) is expected


def test_is_not_stated_spellings() -> None:
    assert all(is_not_stated(a) for a in ("not_stated", "Not stated", "The description does not say."))
    assert not is_not_stated("no")
