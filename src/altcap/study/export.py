"""The study export (interface schema): responses.csv/json, participants.csv, study.json."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from altcap.provenance import build_provenance
from altcap.study.columns import PARTICIPANT_COLUMNS, RESPONSE_COLUMNS
from altcap.study.db import Answer, Participant, Study, Trial
from altcap.study.freeze import describe_design

NUMERIC_ITEMS = frozenset({"task_confidence"})
VERIFY_NUMERIC_ITEMS = frozenset({"correctness"})
VERIFY_BOOLEAN_ITEMS = frozenset({"hallucination"})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _json_value(answer: Answer, trial_kind: str, likert_ids: set[str]) -> Any:
    if trial_kind == "verify":
        # A design's Likert item may share an id with a verifier item; the trial kind decides.
        if answer.item in VERIFY_NUMERIC_ITEMS:
            return int(answer.value)
        if answer.item in VERIFY_BOOLEAN_ITEMS:
            return answer.value == "true"
        return answer.value
    if answer.item in likert_ids or answer.item in NUMERIC_ITEMS:
        return int(answer.value)
    return answer.value


def build_response_rows(db: Session, likert_ids: set[str]) -> list[dict[str, Any]]:
    """One row per stored answer, in participant then trial order (JSON-typed values).

    Participants come first, then sighted verifiers (trial_kind "verify": items "correctness" 1..5,
    "hallucination" true/false and an optional "comment", each with system and position filled).

    Args:
        db: session.
        likert_ids: ids of the design's Likert items (their values are exported as integers).

    Returns:
        Rows with exactly RESPONSE_COLUMNS.
    """
    study_id = db.scalar(select(Study.study_id))
    stimuli = json.loads(db.scalar(select(Study.stimuli_json)) or "[]")
    flags = {s["image"]: ";".join(s.get("quality_flags", [])) for s in stimuli}
    query = (
        select(Answer, Trial, Participant)
        .join(Trial, Answer.trial_id == Trial.id)
        .join(Participant, Answer.participant_id == Participant.id)
        .order_by(
            Participant.role, Participant.participant_index, Trial.trial_index, Answer.position, Answer.id
        )
    )
    rows = []
    for answer, trial, participant in db.execute(query):
        rows.append(
            {
                "study_id": study_id,
                "participant_id": participant.public_id,
                "participant_status": participant.status,
                "trial_index": trial.trial_index,
                "trial_kind": trial.kind,
                "image": trial.image,
                "system": answer.system,
                "position": answer.position or "",
                "item": answer.item,
                "value": _json_value(answer, trial.kind, likert_ids),
                "correct": "" if answer.correct is None else bool(answer.correct),
                "question_id": answer.question_id,
                "response_ms": "" if answer.response_ms is None else answer.response_ms,
                "started_at": answer.started_at,
                "submitted_at": answer.submitted_at,
                "context": trial.context or "",
                "quality_flags": flags.get(trial.image, ""),
            }
        )
    return rows


def build_participant_rows(db: Session) -> list[dict[str, Any]]:
    """One row per invited participant, then per verifier (withdrawn ones included and marked)."""
    participants = db.scalars(select(Participant).order_by(Participant.role, Participant.participant_index))
    return [
        {
            "participant_id": p.public_id,
            "status": p.status,
            "invited_at": p.invited_at,
            "started_at": p.started_at,
            "completed_at": p.completed_at,
            "withdrawn_at": p.withdrawn_at,
            "withdraw_reason": p.withdraw_reason,
            "latin_square_row": "" if p.latin_square_row < 0 else p.latin_square_row,
            "completion_code": p.completion_code,
            "role": p.role,
        }
        for p in participants
    ]


def neutralise_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula (OWASP's rule: prefix a quote).

    Text a participant typed (a comment, a withdrawal reason) starting with = + - @ tab or CR would
    otherwise run when the researcher opens the CSV; numbers are never prefixed, so -3 stays -3.

    Args:
        value: the cell's value.

    Returns:
        The value, or its text with a leading `'` when it would start a formula.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def format_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """CSV text with a header; booleans as true/false (as in the JSON); formula-like text neutralised."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (str(v).lower() if isinstance(v, bool) else neutralise_cell(v)) for k, v in row.items()}
        )
    return buffer.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_export(db: Session, likert_ids: set[str], out_dir: Path) -> dict[str, Path]:
    """Write the four export files plus provenance.json into out_dir.

    Args:
        db: session.
        likert_ids: ids of the design's Likert items.
        out_dir: folder to write into (created if needed; files are replaced atomically).

    Returns:
        Name -> path of each written file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    study = db.scalars(select(Study)).one()
    responses = build_response_rows(db, likert_ids)
    texts = {
        "responses.csv": format_csv(responses, RESPONSE_COLUMNS),
        "responses.json": json.dumps(responses, indent=1, ensure_ascii=False),
        "participants.csv": format_csv(build_participant_rows(db), PARTICIPANT_COLUMNS),
        "study.json": json.dumps(describe_design(study), indent=2, ensure_ascii=False),
    }
    paths = {}
    for name, text in texts.items():
        paths[name] = out_dir / name
        _write_atomic(paths[name], text)
    provenance = build_provenance(None, design_sha256=study.design_sha256, n_responses=len(responses))
    _write_atomic(out_dir / "provenance.json", json.dumps(provenance, indent=2))
    paths["provenance.json"] = out_dir / "provenance.json"
    return paths
