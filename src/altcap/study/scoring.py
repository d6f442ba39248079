"""Scoring of caption-only task answers against an answer key (issue #14).

Stable interface shared with the study web app: `score_answer(answer, key) -> bool`, `AnswerKey`,
`NOT_STATED`, `is_not_stated`, `normalize_answer`. Answers are compared after normalisation: case,
accents, punctuation and whitespace are ignored, number words become digits ("three" == "3",
"twenty-one" == "21"), and every spelling of "the description does not say" maps to `NOT_STATED`, which
is correct only when the key itself says the caption cannot answer the question.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NOT_STATED = "not_stated"
_NOT_STATED_PHRASES = {
    "not stated",
    "notstated",
    "does not say",
    "doesnt say",
    "doesn t say",
    "the description does not say",
    "the description doesnt say",
    "description does not say",
    "not said",
    "not mentioned",
    "cannot tell",
}
# A small table instead of a dependency: the PyPI number-word parsers are unmaintained and we only
# need counts a caption would plausibly state ("three people", "twenty-one candles").
_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
]
_TEENS = {"sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_NUMBER_WORDS = {word: value for value, word in enumerate(_UNITS)} | _TEENS | _TENS
_NUMBER_WORDS |= {"none": 0, "single": 1, "couple": 2, "pair": 2, "dozen": 12}
_FILLER = {"a", "an", "of", "the", "about", "exactly"}


class AnswerKey(BaseModel):
    """The answer key of one task question."""

    model_config = ConfigDict(extra="forbid")

    question_id: str = Field(default="", description="Question id, as in the questions file.")
    kind: Literal["choice", "number", "text"] = Field(
        default="choice", description="choice = one of the options; number = a count; text = short free text."
    )
    answer: str = Field(description=f"The correct answer; {NOT_STATED!r} when the caption cannot answer it.")
    accepted: list[str] = Field(
        default_factory=list, description="Other spellings that also count as correct."
    )


def normalize_answer(text: str, numeric: bool = False) -> str:
    """Lower-case, strip accents, punctuation and extra spaces; map not-stated spellings to NOT_STATED.

    Args:
        text: raw answer text.
        numeric: also turn a number written in words or digits into its canonical digits ("Three." -> "3").

    Returns:
        The canonical form used for comparison.
    """
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points, drop full stops
    text = " ".join(re.sub(r"[^\w\s.]|_", " ", text).split())
    if text in _NOT_STATED_PHRASES or text.replace(" ", "_") == NOT_STATED:
        return NOT_STATED
    number = parse_number(text) if numeric else None
    if number is not None:
        return f"{number:g}"
    return text


def is_not_stated(answer: str) -> bool:
    """True when the answer is the "the description does not say" option."""
    return normalize_answer(answer) == NOT_STATED


def parse_number(text: str) -> float | None:
    """Read a count from digits or number words ("3", "3.0", "three", "twenty one", "a dozen").

    Args:
        text: a normalised answer.

    Returns:
        The number, or None when the text is not one number.
    """
    words = [w for w in text.split() if w not in _FILLER]
    if len(words) == 1:
        try:
            return float(words[0])
        except ValueError:
            return float(_NUMBER_WORDS[words[0]]) if words[0] in _NUMBER_WORDS else None
    if len(words) == 2 and words[0] in _TENS and _NUMBER_WORDS.get(words[1], 10) < 10:
        return float(_TENS[words[0]] + _NUMBER_WORDS[words[1]])
    return None


def score_answer(answer: str, key: AnswerKey) -> bool:
    """Whether a participant's answer matches the key.

    Args:
        answer: the answer as given (free text, a choice label, or "not_stated").
        key: the question's answer key.

    Returns:
        True when the normalised answer equals the key's answer or an accepted variant (numerically for
        kind=number and for number-like answers); "does not say" is correct only when the key says so.
    """
    given = normalize_answer(answer)
    targets = {normalize_answer(t) for t in [key.answer, *key.accepted]}
    if given == NOT_STATED or NOT_STATED in targets:
        return given == NOT_STATED and NOT_STATED in targets
    if given in targets:
        return True
    given_number = parse_number(given)
    return given_number is not None and any(parse_number(t) == given_number for t in targets)
