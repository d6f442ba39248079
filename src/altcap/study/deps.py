"""Request dependencies: app state, DB session, the participant behind a token, the admin session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from altcap.study.db import Participant
from altcap.study.freeze import hash_token
from altcap.study.security import ADMIN_COOKIE, read_admin_cookie
from altcap.study.trials import LoadedStudy

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass
class AppState:
    """What every request needs; built once by `create_app`."""

    engine: Engine
    session_factory: sessionmaker
    study: LoadedStudy
    templates: Jinja2Templates


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
        raise PageError(
            404,
            "This link does not work",
            "We could not find this study link. Please check that you copied the whole link from "
            "your invitation, or ask the research team for a new one.",
        )
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


def require_admin(request: Request, state: StateDep) -> str:
    """The admin session id from the signed cookie; raises AdminLoginRequired without one."""
    session_id = read_admin_cookie(state.study.secret_key, request.cookies.get(ADMIN_COOKIE))
    if session_id is None:
        raise AdminLoginRequired()
    return session_id


AdminDep = Annotated[str, Depends(require_admin)]
