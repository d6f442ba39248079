"""Participant pages: consent, instructions, trials, pause, thank-you; all plain HTML forms."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from altcap.study.db import Answer, Participant, Trial, serialize_writes, utc_now
from altcap.study.deps import (
    DbDep,
    FormDep,
    PageError,
    ParticipantDep,
    StateDep,
    find_participant,
    get_state,
    read_text_form,
    render,
)
from altcap.study.security import issue_form_token, verify_form_token
from altcap.study.trials import (
    CONFIDENCE_ITEM,
    CORRECTNESS_ITEM,
    HALLUCINATION_CHOICES,
    HALLUCINATION_QUESTION,
    FormResult,
    captions_in_order,
    count_trials,
    describe_recorded,
    next_open_trial,
    parse_attention,
    parse_rating,
    parse_task,
    parse_verify,
    record_submission,
)

router = APIRouter(prefix="/p/{token}", tags=["participant"])
STALE_FORM = PageError(
    400,
    "This form could not be saved",
    "The page was out of date or did not come from this study. Open your study link again to "
    "continue where you left off; everything you saved before is kept.",
)
# Far above any real study (a few hundred trials), far below what SQLite/PostgreSQL integers overflow on.
TrialIndex = Annotated[int, Path(ge=0, le=99_999)]


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def current_step_url(db: Session, participant: Participant, token: str, saved: bool = False) -> str:
    """Where a participant continues: consent, instructions, the next open trial, or thank-you."""
    suffix = "?saved=1" if saved else ""
    if not participant.consented_at:
        return f"/p/{token}/consent"
    if not participant.started_at:
        return f"/p/{token}/instructions"
    trial = next_open_trial(db, participant)
    return f"/p/{token}/trial/{trial.trial_index}{suffix}" if trial else f"/p/{token}/done{suffix}"


@router.get("")
def resume(token: str, participant: ParticipantDep, db: DbDep) -> RedirectResponse:
    """The invitation link: continue wherever this participant stopped, on any device."""
    return _see_other(current_step_url(db, participant, token))


def _simple_form(request: Request, participant: Participant, name: str, context: dict, status: int = 200):
    state = get_state(request)
    nonce, csrf = issue_form_token(state.study.secret_key, str(participant.id), 0)
    return render(
        request, name, {"nonce": nonce, "csrf": csrf, "participant": participant, **context}, status
    )


def _check_simple_form(state: StateDep, participant: Participant, form: dict[str, str]) -> None:
    nonce, csrf = form.get("nonce", ""), form.get("csrf", "")
    if verify_form_token(state.study.secret_key, str(participant.id), 0, nonce, csrf) is None:
        raise STALE_FORM


@router.get("/consent", response_class=HTMLResponse)
def show_consent(request: Request, token: str, participant: ParticipantDep) -> Response:
    """The consent page."""
    return _simple_form(request, participant, "consent.html", {"token": token})


@router.post("/consent")
def give_consent(
    request: Request,
    token: str,
    participant: ParticipantDep,
    db: DbDep,
    state: StateDep,
    form: FormDep,
) -> Response:
    """Record consent (an unticked box re-shows the page with the error tied to it)."""
    _check_simple_form(state, participant, form)
    if form.get("agree") != "yes":
        errors = [("agree", "agree", "To take part, tick the box to say you agree.")]
        return _simple_form(request, participant, "consent.html", {"token": token, "errors": errors}, 422)
    if not participant.consented_at:
        participant.consented_at = utc_now()
        with serialize_writes(db):
            db.commit()
    return _see_other(current_step_url(db, participant, token))


@router.get("/instructions", response_class=HTMLResponse)
def show_instructions(request: Request, token: str, participant: ParticipantDep, db: DbDep) -> Response:
    """How the study works; the start button leads to the practice trial."""
    if not participant.consented_at:
        return _see_other(f"/p/{token}/consent")
    total, _ = count_trials(db, participant)
    has_practice = (
        db.scalar(
            select(func.count())
            .select_from(Trial)
            .where(Trial.participant_id == participant.id, Trial.kind == "practice")
        )
        or 0
    )
    return _simple_form(
        request,
        participant,
        "instructions.html",
        {"token": token, "total": total, "has_practice": has_practice},
    )


@router.post("/instructions")
def start_trials(
    token: str,
    participant: ParticipantDep,
    db: DbDep,
    state: StateDep,
    form: FormDep,
) -> Response:
    """Mark the start; the first trial follows."""
    _check_simple_form(state, participant, form)
    if not participant.started_at:
        participant.started_at = utc_now()
        with serialize_writes(db):
            db.commit()
    return _see_other(current_step_url(db, participant, token))


def _load_trial(db: Session, participant: Participant, trial_index: int) -> Trial:
    trial = db.scalars(
        select(Trial).where(Trial.participant_id == participant.id, Trial.trial_index == trial_index)
    ).first()
    if trial is None:
        raise PageError(
            404,
            "Page not found",
            "There is no such trial in your study. Open your study link to continue where you left off.",
        )
    return trial


def _trial_context(request: Request, db: Session, participant: Participant, trial: Trial, token: str) -> dict:
    study = get_state(request).study
    total, _ = count_trials(db, participant)
    number = (
        db.scalar(
            select(func.count())
            .select_from(Trial)
            .where(
                Trial.participant_id == participant.id,
                Trial.kind != "practice",
                Trial.trial_index <= trial.trial_index,
            )
        )
        or 0
    )
    context = {
        "token": token,
        "trial": trial,
        "number": number,
        "total": total,
        "likert_items": study.config.likert_items,
        "confidence_item": CONFIDENCE_ITEM,
        "show_image": study.config.show_image,
        "values": {},
    }
    if trial.kind in ("rating", "practice"):
        context["captions"] = captions_in_order(study, trial)
    elif trial.kind == "task":
        context["question"] = study.questions[trial.question_id]
        context["caption"] = study.stimuli[trial.image][trial.task_system]
    elif trial.kind == "verify":
        context["caption"] = study.stimuli[trial.image][trial.task_system]
        context.update(
            correctness_item=CORRECTNESS_ITEM,
            hallucination_question=HALLUCINATION_QUESTION,
            hallucination_choices=HALLUCINATION_CHOICES,
        )
    else:
        context["check"] = study.config.attention_checks[trial.attention_index]
    return context


@router.get("/trial/{trial_index}", response_class=HTMLResponse)
def show_trial(
    request: Request,
    token: str,
    trial_index: TrialIndex,
    participant: ParticipantDep,
    db: DbDep,
    saved: int = 0,
) -> Response:
    """One trial page; a trial already answered (or not reached yet) redirects to the open one."""
    trial = _load_trial(db, participant, trial_index)
    if not participant.started_at:
        return _see_other(current_step_url(db, participant, token))
    open_trial = next_open_trial(db, participant)
    if open_trial is None or open_trial.id != trial.id:
        return _see_other(current_step_url(db, participant, token))
    state = get_state(request)
    nonce, csrf = issue_form_token(state.study.secret_key, str(participant.id), trial.id)
    context = _trial_context(request, db, participant, trial, token)
    context.update(nonce=nonce, csrf=csrf, status_message="Answer saved." if saved else "")
    return render(request, template_for(trial), context)


def template_for(trial: Trial) -> str:
    """The page template of a trial kind (practice trials look like rating trials)."""
    return f"trial_{'rating' if trial.kind == 'practice' else trial.kind}.html"


def _parse_form(request: Request, trial: Trial, form: dict, issued_ms: int) -> FormResult:
    study = get_state(request).study
    if trial.kind in ("rating", "practice"):
        return parse_rating(study, trial, form)
    if trial.kind == "verify":
        return parse_verify(trial, form)
    if trial.kind == "task":
        return parse_task(study, trial, form, int(time.time() * 1000) - issued_ms)
    return parse_attention(study, trial, form)


def _answer_already_recorded(
    request: Request, db: Session, trial: Trial, token: str, result: FormResult
) -> Response | None:
    """A form for a trial that already has its answer: a retry of the same answer is acknowledged as
    saved; a different answer (a stale page, a back button) is not stored, and the page says so."""
    stored = db.scalars(select(Answer).where(Answer.trial_id == trial.id).order_by(Answer.id)).all()
    sent = {(row["item"], row.get("position", 0), str(row["value"])) for row in result.rows}
    if not result.errors and sent == {(a.item, a.position, a.value) for a in stored}:
        return None
    study = get_state(request).study
    context = {"token": token, "recorded": describe_recorded(study, trial, stored)}
    return render(request, "recorded.html", context, 409)


def _submit_trial(request: Request, token: str, trial_index: int, form: dict) -> Response:
    state = get_state(request)
    with state.session_factory() as db:
        participant = find_participant(db, token)
        trial = _load_trial(db, participant, trial_index)
        nonce, csrf = form.get("nonce", ""), form.get("csrf", "")
        issued_ms = verify_form_token(state.study.secret_key, str(participant.id), trial.id, nonce, csrf)
        if issued_ms is None:
            raise STALE_FORM
        result = _parse_form(request, trial, form, issued_ms)
        open_trial = next_open_trial(db, participant)
        if open_trial is None or open_trial.id != trial.id:
            if open_trial is None or trial.trial_index < open_trial.trial_index:
                page = _answer_already_recorded(request, db, trial, token, result)
                if page is not None:
                    return page
            # A retry after a lost response (or a double click): acknowledge, store nothing new.
            return _see_other(current_step_url(db, participant, token, saved=True))
        if result.errors:
            context = _trial_context(request, db, participant, trial, token)
            context.update(nonce=nonce, csrf=csrf, errors=result.errors, values=result.values)
            return render(request, template_for(trial), context, 422)
        if not record_submission(db, participant, trial, nonce, issued_ms, result.rows):
            # Another request stored this trial between our check and our commit.
            db.expire_all()
            page = _answer_already_recorded(request, db, trial, token, result)
            if page is not None:
                return page
        return _see_other(current_step_url(db, participant, token, saved=True))


@router.post("/trial/{trial_index}")
async def submit_trial(request: Request, token: str, trial_index: TrialIndex) -> Response:
    """Check and store a trial's answers (committed before the redirect is sent)."""
    form = await read_text_form(request)
    return await run_in_threadpool(_submit_trial, request, token, trial_index, form)


@router.get("/trial/{trial_index}/image")
def trial_image(
    request: Request, trial_index: TrialIndex, participant: ParticipantDep, db: DbDep
) -> FileResponse:
    """The image of the trial the participant is on or has done, after consent (never a later one)."""
    trial = _load_trial(db, participant, trial_index)
    state = get_state(request)
    shown = trial.kind == "verify" or (trial.kind in ("rating", "practice") and state.study.config.show_image)
    open_trial = next_open_trial(db, participant)
    reached = open_trial is None or trial.trial_index <= open_trial.trial_index
    if not shown or not participant.consented_at or not participant.started_at or not reached:
        raise PageError(404, "Page not found", "This trial has no image.")
    return FileResponse(
        state.study.stimuli[trial.image]["path"], headers={"Cache-Control": "private, max-age=3600"}
    )


@router.get("/pause", response_class=HTMLResponse)
def pause(request: Request, token: str, participant: ParticipantDep, db: DbDep) -> Response:
    """Explain how to come back later; nothing is lost by leaving."""
    return render(
        request, "pause.html", {"token": token, "resume_url": current_step_url(db, participant, token)}
    )


@router.get("/done", response_class=HTMLResponse)
def done(request: Request, token: str, participant: ParticipantDep, db: DbDep, saved: int = 0) -> Response:
    """Thank-you page with the completion code (only once every trial is answered)."""
    if participant.status != "completed":
        return _see_other(current_step_url(db, participant, token))
    return render(
        request,
        "done.html",
        {"participant": participant, "status_message": "Answer saved. You have finished." if saved else ""},
    )
