"""Researcher pages behind the admin secret: progress per participant and withdrawal."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import delete, exists, func, select

from altcap.study.db import AdminSession, Participant, Submission, Trial, serialize_writes, utc_now
from altcap.study.deps import AdminDep, DbDep, FormDep, PageError, StateDep, render
from altcap.study.freeze import hash_token
from altcap.study.guard import client_of, too_many_attempts
from altcap.study.security import (
    ADMIN_COOKIE,
    ADMIN_SESSION_SECONDS,
    check_admin_secret,
    issue_form_token,
    make_admin_cookie,
    new_admin_session_id,
    verify_form_token,
)

router = APIRouter(prefix="/admin", tags=["admin"])
logger = logging.getLogger("altcap.study")
MAX_REASON_CHARS = 2000


def _login_page(request: Request, state: StateDep, errors: list | None = None, status: int = 200) -> Response:
    nonce, csrf = issue_form_token(state.study.secret_key, "login", 0)
    return render(request, "admin_login.html", {"nonce": nonce, "csrf": csrf, "errors": errors or []}, status)


def _check_form_token(state: StateDep, session_id: str, nonce: str, csrf: str) -> None:
    # Every admin form after sign-in is tied to the session, so a form from an old page fails alike.
    if verify_form_token(state.study.secret_key, session_id, 0, nonce, csrf) is None:
        raise PageError(
            400, "This form could not be sent", "The page was out of date; reload it and try again."
        )


@router.get("", response_class=HTMLResponse)
@router.get("/login", response_class=HTMLResponse)
def show_login(request: Request, state: StateDep) -> Response:
    """The sign-in form (the admin secret is in run_dir/admin_secret.txt)."""
    return _login_page(request, state)


@router.post("/login")
def login(request: Request, state: StateDep, db: DbDep, form: FormDep) -> Response:
    """Check the admin secret (rate-limited per client and per account) and start a session."""
    nonce, csrf = form.get("nonce", ""), form.get("csrf", "")
    if verify_form_token(state.study.secret_key, "login", 0, nonce, csrf) is None:
        return _login_page(
            request, state, [("secret", "secret", "The form expired; please sign in again.")], 400
        )
    client = client_of(request)
    if not state.limits.admin_allowed(client):
        logger.warning("rate limit: too many failed admin sign-ins (from %s or in total); refused", client)
        return too_many_attempts(request)
    if not check_admin_secret(state.study.admin_secret_sha256, form.get("secret", "")):
        state.limits.record_admin_failure(client)
        logger.warning("failed admin sign-in from %s", client)
        return _login_page(request, state, [("secret", "secret", "That admin secret is not correct.")], 401)
    session_id = new_admin_session_id()
    # Sessions past their 12 h are dead anyway; dropping them keeps the table to the live ones.
    cutoff = (datetime.now(UTC) - timedelta(seconds=ADMIN_SESSION_SECONDS)).isoformat(timespec="milliseconds")
    db.execute(delete(AdminSession).where(AdminSession.created_at < cutoff))
    db.add(AdminSession(session_sha256=hash_token(session_id), created_at=utc_now()))
    with serialize_writes(db):
        db.commit()
    response = RedirectResponse("/admin/participants", status_code=303)
    response.set_cookie(
        ADMIN_COOKIE,
        make_admin_cookie(state.study.secret_key, session_id),
        max_age=ADMIN_SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request, session_id: AdminDep, db: DbDep, state: StateDep, form: FormDep) -> Response:
    """End the admin session server-side, so the cookie stops working even if it was copied."""
    _check_form_token(state, session_id, form.get("nonce", ""), form.get("csrf", ""))
    db.execute(delete(AdminSession).where(AdminSession.session_sha256 == hash_token(session_id)))
    with serialize_writes(db):
        db.commit()
    response = RedirectResponse("/admin", status_code=303)
    secure = request.url.scheme == "https"
    response.delete_cookie(ADMIN_COOKIE, httponly=True, samesite="strict", secure=secure)
    return response


def _progress_rows(db: DbDep) -> list[dict]:
    answered = exists().where(Submission.trial_id == Trial.id)
    counts = dict(
        db.execute(
            select(Trial.participant_id, func.count())
            .where(Trial.kind != "practice")
            .group_by(Trial.participant_id)
        ).all()
    )
    done = dict(
        db.execute(
            select(Trial.participant_id, func.count())
            .where(Trial.kind != "practice", answered)
            .group_by(Trial.participant_id)
        ).all()
    )
    # "participant" sorts before "verifier", so BLV participants are listed first.
    participants = db.scalars(select(Participant).order_by(Participant.role, Participant.participant_index))
    return [{"p": p, "total": counts.get(p.id, 0), "done": done.get(p.id, 0)} for p in participants]


@router.get("/participants", response_class=HTMLResponse)
def participants(
    request: Request, session_id: AdminDep, db: DbDep, state: StateDep, saved: str = ""
) -> Response:
    """Progress of every participant, with a withdraw form each."""
    nonce, csrf = issue_form_token(state.study.secret_key, session_id, 0)
    message = f"Participant {saved} withdrawn." if saved else ""
    return render(
        request,
        "admin_participants.html",
        {"rows": _progress_rows(db), "nonce": nonce, "csrf": csrf, "status_message": message},
    )


@router.post("/participants/{public_id}/withdraw")
def withdraw(
    request: Request,
    public_id: str,
    session_id: AdminDep,
    db: DbDep,
    state: StateDep,
    form: FormDep,
) -> Response:
    """Withdraw a participant: data kept and marked, their link closed, excluded from analysis."""
    nonce, csrf, reason = form.get("nonce", ""), form.get("csrf", ""), form.get("reason", "")
    _check_form_token(state, session_id, nonce, csrf)
    participant = db.scalars(select(Participant).where(Participant.public_id == public_id)).first()
    if participant is None:
        raise PageError(
            404, "No such participant", "No participant has that id. Go back to the participant list."
        )
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        rows = _progress_rows(db)
        errors = [
            (
                f"reason-{public_id}",
                f"reason-{public_id}",
                f"Reason for withdrawing {public_id}: give a reason (at most {MAX_REASON_CHARS} characters).",
            )
        ]
        return render(
            request,
            "admin_participants.html",
            {"rows": rows, "nonce": nonce, "csrf": csrf, "errors": errors},
            422,
        )
    if participant.status != "withdrawn":
        participant.status, participant.withdrawn_at, participant.withdraw_reason = (
            "withdrawn",
            utc_now(),
            reason,
        )
        with serialize_writes(db):
            db.commit()
    return RedirectResponse(f"/admin/participants?saved={public_id}", status_code=303)
