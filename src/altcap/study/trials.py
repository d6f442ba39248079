"""What a trial page shows, how its form is checked, and how its answers are stored (once)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import yaml
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from altcap.study.config import NOT_STATED, LikertItem, StudyConfig, TaskQuestion
from altcap.study.db import Answer, Participant, Study, Submission, Trial, serialize_writes, utc_now
from altcap.study.practice import practice_example_stimulus
from altcap.study.scoring import AnswerKey, score_answer
from altcap.study.security import parse_ascii_int

SYSTEMS = ("base", "finetuned")
CONFIDENCE_ITEM = LikertItem(
    id="confidence",
    question="How confident are you in your answer?",
    scale_max=5,
    anchors={1: "Not at all confident", 5: "Completely confident"},
)
MAX_COMMENT_CHARS = 5000
# Sighted verifiers (issue #6): factual correctness and a hallucination flag per caption.
CORRECTNESS_ITEM = LikertItem(
    id="correctness",
    question="Is this description factually correct?",
    scale_max=5,
    anchors={
        1: "Not at all correct",
        2: "Mostly incorrect",
        3: "Partly correct",
        4: "Mostly correct",
        5: "Completely correct",
    },
)
HALLUCINATION_QUESTION = "Does it mention anything that is not in the image?"
HALLUCINATION_CHOICES = (("yes", "Yes, it mentions something that is not in the image"), ("no", "No"))
PREFERENCE_QUESTION = "Which description would you rather have for this photograph?"


@dataclass(frozen=True)
class LoadedStudy:
    """The frozen design, decoded once at start-up."""

    study_id: str
    config: StudyConfig
    stimuli: dict[str, dict[str, str]]
    questions: dict[str, TaskQuestion]
    secret_key: str
    admin_secret_sha256: str


@dataclass
class FormResult:
    """Parsed answers (rows for the Answer table) or the errors to show, plus what was entered."""

    rows: list[dict] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (field, first input id, message)
    values: dict[str, str] = field(default_factory=dict)


def load_study(study: Study, secret_key: str = "") -> LoadedStudy:
    """Decode a Study row.

    Args:
        study: the frozen study.
        secret_key: the signing key from run_dir/secret_key ("" where nothing is signed, e.g. export).

    Returns:
        The decoded study.
    """
    config = StudyConfig.model_validate(yaml.safe_load(study.design_yaml) or {})
    questions = [TaskQuestion.model_validate(q) for q in json.loads(study.questions_json)]
    return LoadedStudy(
        study.study_id,
        config,
        {s["image"]: s for s in [practice_example_stimulus(), *json.loads(study.stimuli_json)]},
        {q.question_id: q for q in questions},
        secret_key,
        study.admin_secret_sha256,
    )


def system_at(trial: Trial, position: int) -> str:
    """The system whose caption is shown at `position` (1 or 2) of a rating trial."""
    return "base" if position == trial.base_position else "finetuned"


def captions_in_order(study: LoadedStudy, trial: Trial) -> list[tuple[int, str]]:
    """(position, caption) for Description 1 and 2 of a rating or practice trial."""
    stimulus = study.stimuli[trial.image]
    return [(pos, stimulus[system_at(trial, pos)]) for pos in (1, 2)]


def _pick_scale(
    form: Mapping[str, str], name: str, scale_max: int, label: str, result: FormResult
) -> int | None:
    raw = (form.get(name) or "").strip()
    result.values[name] = raw
    value = parse_ascii_int(raw, max_digits=2)
    if value is not None and 1 <= value <= scale_max:
        return value
    result.errors.append((name, f"{name}-1", f"{label} Choose 1 to {scale_max}."))
    return None


def parse_rating(study: LoadedStudy, trial: Trial, form: Mapping[str, str]) -> FormResult:
    """Likert values per caption, the preference (decoded to a system) and the optional comment."""
    result = FormResult()
    for position in (1, 2):
        system = system_at(trial, position)
        for item in study.config.likert_items:
            label = f"Description {position}: {item.question}"
            value = _pick_scale(form, f"{item.id}-{position}", item.scale_max, label, result)
            if value is not None:
                result.rows.append(
                    {"item": item.id, "position": position, "system": system, "value": str(value)}
                )
    choice = (form.get("preference") or "").strip()
    result.values["preference"] = choice
    if choice in ("1", "2", "none"):
        chosen = int(choice) if choice != "none" else 0
        preferred = system_at(trial, chosen) if chosen else "none"
        result.rows.append({"item": "preference", "position": chosen, "system": "", "value": preferred})
    else:
        result.errors.append(
            ("preference", "preference-1", f"{PREFERENCE_QUESTION} Choose one, or No preference.")
        )
    comment = (form.get("comment") or "").strip()
    result.values["comment"] = comment
    if len(comment) > MAX_COMMENT_CHARS:
        message = f"Comment: shorten it to {MAX_COMMENT_CHARS} characters (it has {len(comment)})."
        result.errors.append(("comment", "comment", message))
    elif comment:
        result.rows.append({"item": "comment", "position": 0, "system": "", "value": comment})
    return result


def describe_verifier_items() -> list[dict]:
    """The verifier questions as frozen into study.json (export item ids, wording, scale)."""
    return [
        {"id": "correctness", **CORRECTNESS_ITEM.model_dump(exclude={"id"})},
        {"id": "hallucination", "question": HALLUCINATION_QUESTION, "values": ["true", "false"]},
        {"id": "comment", "question": "Note (optional)", "values": "free text"},
    ]


def verify_position(trial: Trial) -> int:
    """Whether a verify trial shows its image's first (1) or second (2) caption for this verifier."""
    return trial.base_position if trial.task_system == "base" else 3 - trial.base_position


def parse_verify(trial: Trial, form: Mapping[str, str]) -> FormResult:
    """A verifier's correctness rating, hallucination flag and optional note on one caption."""
    result = FormResult()
    shared = {"position": verify_position(trial), "system": trial.task_system}
    correctness = _pick_scale(form, "correctness", 5, CORRECTNESS_ITEM.question, result)
    if correctness is not None:
        result.rows.append({**shared, "item": "correctness", "value": str(correctness)})
    flag = (form.get("hallucination") or "").strip()
    result.values["hallucination"] = flag
    if flag in ("yes", "no"):
        value = "true" if flag == "yes" else "false"
        result.rows.append({**shared, "item": "hallucination", "value": value})
    else:
        message = f"{HALLUCINATION_QUESTION} Choose Yes or No."
        result.errors.append(("hallucination", "hallucination-1", message))
    comment = (form.get("comment") or "").strip()
    result.values["comment"] = comment
    if len(comment) > MAX_COMMENT_CHARS:
        message = f"Note: shorten it to {MAX_COMMENT_CHARS} characters (it has {len(comment)})."
        result.errors.append(("comment", "comment", message))
    elif comment:
        result.rows.append({**shared, "item": "comment", "value": comment})
    return result


def _task_answer(question: TaskQuestion, form: Mapping[str, str], result: FormResult) -> str | None:
    if question.kind == "choice":
        answer = (form.get("answer") or "").strip()
        result.values["answer"] = answer
        if answer in [*question.choices, NOT_STATED]:
            return answer
        message = f"{question.question} Choose an answer, or “The description does not say”."
        result.errors.append(("answer", "answer-1", message))
        return None
    text, not_stated = (form.get("answer_text") or "").strip(), form.get("not_stated") == "1"
    result.values.update(answer_text=text, not_stated="1" if not_stated else "")
    if bool(text) != not_stated:
        return NOT_STATED if not_stated else text
    message = f"{question.question} Type an answer, or tick “The description does not say” (not both)."
    result.errors.append(("answer", "answer-text", message))
    return None


def parse_task(study: LoadedStudy, trial: Trial, form: Mapping[str, str], response_ms: int) -> FormResult:
    """The answer (scored against the key), its confidence and the response time."""
    question = study.questions[trial.question_id]
    result = FormResult()
    answer = _task_answer(question, form, result)
    confidence = _pick_scale(form, "confidence", 5, CONFIDENCE_ITEM.question, result)
    if answer is None or confidence is None:
        return result
    key = AnswerKey(
        question_id=question.question_id,
        kind=question.kind,
        answer=question.answer,
        accepted=question.accepted,
    )
    shared = {"position": 1, "system": trial.task_system, "question_id": question.question_id}
    result.rows = [
        {
            **shared,
            "item": "task_answer",
            "value": answer,
            "correct": score_answer(answer, key),
            "response_ms": response_ms,
        },
        {**shared, "item": "task_confidence", "value": str(confidence)},
    ]
    return result


def parse_attention(study: LoadedStudy, trial: Trial, form: Mapping[str, str]) -> FormResult:
    """The attention-check answer and whether it is the instructed one."""
    check = study.config.attention_checks[trial.attention_index]
    result = FormResult()
    answer = (form.get("answer") or "").strip()
    result.values["answer"] = answer
    if answer not in check.choices:
        result.errors.append(("answer", "answer-1", f"{check.question} Choose one answer."))
    else:
        result.rows.append(
            {
                "item": "attention",
                "position": 0,
                "system": "",
                "value": answer,
                "correct": answer == check.answer,
            }
        )
    return result


def next_open_trial(db: Session, participant: Participant) -> Trial | None:
    """The first trial of this participant without a stored submission (None = finished)."""
    submitted = exists().where(Submission.trial_id == Trial.id)
    query = (
        select(Trial)
        .where(Trial.participant_id == participant.id, ~submitted)
        .order_by(Trial.trial_index)
        .limit(1)
    )
    return db.scalars(query).first()


def count_trials(db: Session, participant: Participant) -> tuple[int, int]:
    """(non-practice trials, non-practice trials submitted) for the progress display."""
    base = (
        select(func.count())
        .select_from(Trial)
        .where(Trial.participant_id == participant.id, Trial.kind != "practice")
    )
    total = db.scalar(base) or 0
    done = db.scalar(base.where(exists().where(Submission.trial_id == Trial.id))) or 0
    return total, done


def record_submission(
    db: Session, participant: Participant, trial: Trial, nonce: str, issued_ms: int, rows: list[dict]
) -> bool:
    """Store a trial's answers and its submission in one transaction, committed before returning.

    Args:
        db: session.
        participant: who answered.
        trial: the trial answered.
        nonce: the form's nonce (primary key of the submission: a replay stores nothing).
        issued_ms: when the form was rendered (the answers' started_at).
        rows: parsed answer rows.

    Returns:
        True if stored now; False if this trial already had a submission (double submit / retry).
    """
    if db.scalar(select(Submission.nonce).where(Submission.trial_id == trial.id)) is not None:
        return False
    now = utc_now()
    started = datetime.fromtimestamp(issued_ms / 1000, UTC).isoformat(timespec="milliseconds")
    db.add(Submission(nonce=nonce, trial_id=trial.id, submitted_at=now))
    for row in rows:
        db.add(
            Answer(
                participant_id=participant.id,
                trial_id=trial.id,
                started_at=started,
                submitted_at=now,
                item=row["item"],
                position=row.get("position", 0),
                system=row.get("system", ""),
                value=row["value"],
                correct=row.get("correct"),
                question_id=row.get("question_id", ""),
                response_ms=row.get("response_ms"),
            )
        )
    try:
        with serialize_writes(db):
            db.flush()
            if next_open_trial(db, participant) is None and participant.status == "active":
                participant.status, participant.completed_at = "completed", now
            db.commit()
    except IntegrityError:
        db.rollback()
        return False
    return True


def _recorded_label(study: LoadedStudy, trial: Trial, answer: Answer) -> str:
    likert = {item.id: item.question for item in study.config.likert_items}
    if trial.kind == "verify":
        labels = {"correctness": CORRECTNESS_ITEM.question, "hallucination": HALLUCINATION_QUESTION}
        return labels.get(answer.item, "Note")
    if answer.item in likert and trial.kind in ("rating", "practice"):
        return f"Description {answer.position}: {likert[answer.item]}"
    if answer.item == "task_answer":
        return study.questions[trial.question_id].question
    if answer.item == "attention":
        return study.config.attention_checks[trial.attention_index].question
    labels = {"preference": PREFERENCE_QUESTION, "task_confidence": CONFIDENCE_ITEM.question}
    return labels.get(answer.item, "Comment")


def _recorded_value(answer: Answer) -> str:
    # Shown to the participant, so the preference names the description, never the system.
    if answer.item == "preference":
        return f"Description {answer.position}" if answer.position else "No preference"
    if answer.item == "hallucination":
        return "Yes" if answer.value == "true" else "No"
    if answer.value == NOT_STATED:
        return "The description does not say"
    return answer.value


def describe_recorded(study: LoadedStudy, trial: Trial, answers: list[Answer]) -> list[tuple[str, str]]:
    """(question, answer) pairs of a trial's stored answers, worded as the participant saw them.

    Args:
        study: the loaded study.
        trial: the trial.
        answers: its stored Answer rows.

    Returns:
        One pair per stored answer, in storage order.
    """
    return [(_recorded_label(study, trial, a), _recorded_value(a)) for a in answers]
