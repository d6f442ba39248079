"""Request dependencies: app state, DB session, the participant behind a token, the admin session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from altcap.study.db import AdminSession, Participant
from altcap.study.freeze import hash_token
from altcap.study.security import ADMIN_COOKIE, ADMIN_SESSION_SECONDS, read_admin_cookie
from altcap.study.trials import LoadedStudy

if TYPE_CHECKING:
    from altcap.study.rate_limits import FailureLimits

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass
class AppState:
    """What every request needs; built once by `create_app`."""

    engine: Engine
    session_factory: sessionmaker
    study: LoadedStudy
    templates: Jinja2Templates
    limits: FailureLimits

    def token_known(self, token: str) -> bool:
        """Whether an invitation token exists (one indexed lookup; status is checked by the routes)."""
        with self.session_factory() as db:
            query = select(Participant.id).where(Participant.token_sha256 == hash_token(token))
            return db.scalar(query) is not None

    def admin_session_valid(self, cookie: str | None) -> bool:
        """Whether an admin cookie is genuine and its session has not been signed out or expired."""
        with self.session_factory() as db:
            return find_admin_session(db, self.study.secret_key, cookie) is not None


class PageError(Exception):
    """A user-facing error rendered as the error page with its HTTP status (never a traceback)."""

    def __init__(self, status_code: int, title: str, message: str):
        super().__init__(message)
        self.status_code, self.title, self.message = status_code, title, message


class AdminLoginRequired(Exception):
    """No valid admin session: the handler redirects to the sign-in page."""


def get_state(request: Request) -> AppState:
    """The app's shared state."""
    return request.app.state.study_app


StateDep = Annotated[AppState, Depends(get_state)]


def get_db(state: StateDep) -> Iterator[Session]:
    """A session per request, closed afterwards (handlers commit before responding)."""
    with state.session_factory() as session:
        yield session


DbDep = Annotated[Session, Depends(get_db)]


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a template with the study title available to the layout."""
    state = get_state(request)
    full = {"study_title": state.study.config.title, "status_message": "", "errors": [], **context}
    return state.templates.TemplateResponse(request, name, full, status_code=status_code)


def error_response(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    """The error page with its HTTP status."""
    context = {"title": title, "message": message, "code": status_code}
    return render(request, "error.html", context, status_code)


UNKNOWN_LINK = PageError(
    404,
    "This link does not work",
    "We could not find this study link. Please check that you copied the whole link from "
    "your invitation, or ask the research team for a new one.",
)


def find_participant(db: Session, token: str) -> Participant:
    """The participant of an invitation token, or a PageError saying why the link does not work.

    Args:
        db: session.
        token: the token from the link.

    Returns:
        The active or completed participant.
    """
    participant = db.scalars(select(Participant).where(Participant.token_sha256 == hash_token(token))).first()
    if participant is None:
        raise UNKNOWN_LINK
    if participant.status == "withdrawn":
        raise PageError(
            403,
            "Your participation has ended",
            "This link has been closed because your participation was withdrawn. Your choice is "
            "respected; nothing more is needed from you. Contact the research team with questions.",
        )
    if participant.status != "completed" and datetime.fromisoformat(participant.expires_at) < datetime.now(
        UTC
    ):
        raise PageError(
            410,
            "This link has expired",
            "This study link is no longer valid. Please contact the research team if you would "
            "still like to take part.",
        )
    return participant


def get_participant(token: str, db: DbDep) -> Participant:
    """Dependency form of `find_participant` for routes with a `{token}` path parameter."""
    return find_participant(db, token)


ParticipantDep = Annotated[Participant, Depends(get_participant)]


def find_admin_session(db: Session, secret_key: str, cookie: str | None) -> AdminSession | None:
    """The stored session behind a genuine admin cookie, unless signed out or older than 12 h.

    Args:
        db: session.
        secret_key: the study's signing key.
        cookie: the admin cookie value (None when absent).

    Returns:
        The AdminSession row, or None.
    """
    session_id = read_admin_cookie(secret_key, cookie)
    if session_id is None:
        return None
    row = db.get(AdminSession, hash_token(session_id))
    if row is None:
        return None
    age = datetime.now(UTC) - datetime.fromisoformat(row.created_at)
    return row if age.total_seconds() <= ADMIN_SESSION_SECONDS else None


def require_admin(request: Request, state: StateDep, db: DbDep) -> str:
    """The admin session id from the signed cookie; raises AdminLoginRequired without a live one."""
    cookie = request.cookies.get(ADMIN_COOKIE)
    if find_admin_session(db, state.study.secret_key, cookie) is None:
        raise AdminLoginRequired()
    return read_admin_cookie(state.study.secret_key, cookie) or ""


AdminDep = Annotated[str, Depends(require_admin)]


async def read_text_form(request: Request) -> dict[str, str]:
    """The posted form as text fields; refuses file parts and NUL characters with a 400 page.

    A file part used to be stored as the comment's text, and PostgreSQL rejects NUL in text (a 500).

    Args:
        request: the request (its body is capped by the RequestGuard).

    Returns:
        Field name -> value (the last value of a repeated field).
    """
    form = await request.form()
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise PageError(
                400,
                "This form could not be saved",
                "The form contained a file. Only typed answers can be sent; go back and try again.",
            )
        if "\x00" in value or "\x00" in name:
            raise PageError(
                400,
                "This form could not be saved",
                "The form contained a character that cannot be stored. Go back, retype your answer "
                "and try again.",
            )
        fields[name] = value
    return fields


FormDep = Annotated[dict[str, str], Depends(read_text_form)]
