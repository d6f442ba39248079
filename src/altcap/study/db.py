"""SQLAlchemy 2 models and engine of the study database (SQLite WAL by default, PostgreSQL by URL).

Timestamps are stored as ISO 8601 UTC strings: SQLite has no time-zone-aware type, and the export
writes them verbatim.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from altcap.study.security import OWNER_ONLY_FILE, write_owner_only

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# SQLite allows one writer; a waiting writer polls with sleeps of up to 100 ms (sqlite3_busy_timeout),
# which dominated p95 latency under load. Queuing writers on a lock wakes the next one at once.
_SQLITE_WRITE_LOCK = threading.Lock()


class Base(DeclarativeBase):
    """Declarative base of the study tables."""


class Study(Base):
    """The frozen design: study.yaml text, its sha256, captions and questions as JSON."""

    __tablename__ = "study"
    study_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    design_yaml: Mapped[str] = mapped_column(Text)
    design_sha256: Mapped[str] = mapped_column(String(64))
    frozen_at: Mapped[str] = mapped_column(String(40))
    stimuli_json: Mapped[str] = mapped_column(Text)
    questions_json: Mapped[str] = mapped_column(Text)
    admin_secret_sha256: Mapped[str] = mapped_column(String(64))


class AdminSession(Base):
    """A signed-in researcher session (revision 0003): sign-out deletes the row, so the cookie dies."""

    __tablename__ = "admin_session"
    session_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))


class Participant(Base):
    """One invitation; only the token's hash is stored, so a copied DB does not hand out links.

    `role` is "participant" (BLV rater) or "verifier" (sighted fact checker, issue #6); each role
    numbers its own `participant_index` from 0.
    """

    __tablename__ = "participant"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.study_id"))
    participant_index: Mapped[int] = mapped_column(Integer)
    public_id: Mapped[str] = mapped_column(String(20), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    latin_square_row: Mapped[int] = mapped_column(Integer)
    invited_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[str] = mapped_column(String(40), default="")
    consented_at: Mapped[str] = mapped_column(String(40), default="")
    completed_at: Mapped[str] = mapped_column(String(40), default="")
    withdrawn_at: Mapped[str] = mapped_column(String(40), default="")
    withdraw_reason: Mapped[str] = mapped_column(Text, default="")
    completion_code: Mapped[str] = mapped_column(String(100), default="")
    # server_default fills the column for rows invited before revision 0002 added verifiers.
    role: Mapped[str] = mapped_column(String(20), default="participant", server_default="participant")


class Trial(Base):
    """One assigned step of a participant, in the order shown."""

    __tablename__ = "trial"
    __table_args__ = (UniqueConstraint("participant_id", "trial_index", name="uq_trial_order"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    trial_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    image: Mapped[str] = mapped_column(Text, default="")
    question_id: Mapped[str] = mapped_column(String(100), default="")
    base_position: Mapped[int] = mapped_column(Integer, default=0)
    task_system: Mapped[str] = mapped_column(String(20), default="")
    attention_index: Mapped[int] = mapped_column(Integer, default=-1)
    # Where the image appears (revision 0004; issue #29), copied from the frozen design at invite time.
    context: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)


class Submission(Base):
    """One accepted form post per trial; the nonce makes a retried post recognisable."""

    __tablename__ = "submission"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"), unique=True)
    submitted_at: Mapped[str] = mapped_column(String(40))


class Answer(Base):
    """One exported row: an item's value for one trial (and caption position, 0 = none)."""

    __tablename__ = "answer"
    __table_args__ = (
        UniqueConstraint("participant_id", "trial_id", "item", "position", name="uq_answer_once"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"))
    item: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    system: Mapped[str] = mapped_column(String(20), default="")
    value: Mapped[str] = mapped_column(Text)
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    question_id: Mapped[str] = mapped_column(String(100), default="")
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[str] = mapped_column(String(40))
    submitted_at: Mapped[str] = mapped_column(String(40))


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the single writer; synchronous=FULL fsyncs each commit, so an
    # acknowledged answer survives kill -9 and power loss.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for a SQLite path URL or a PostgreSQL URL, with durability settings applied.

    Args:
        url: SQLAlchemy URL, e.g. `sqlite:////abs/study.db` or `postgresql+psycopg://u@host/db`.

    Returns:
        The engine.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        # The pool matches the request thread pool (40), so no request waits for a connection.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=40, max_overflow=10
        )
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


@contextmanager
def serialize_writes(session: Session) -> Iterator[None]:
    """Hold the process-wide write lock around a write transaction on SQLite (no-op elsewhere)."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    with _SQLITE_WRITE_LOCK:
        yield


def make_session_factory(engine: Engine) -> sessionmaker:
    """Session factory whose objects stay readable after commit (templates render after it)."""
    return sessionmaker(engine, expire_on_commit=False)


def upgrade_database(engine: Engine, key_file: Path | None = None) -> None:
    """Create or migrate the schema to the newest Alembic revision.

    Args:
        engine: the study database engine.
        key_file: run_dir/secret_key; revision 0003 moves a signing key still held by an older
            database into this file (needed only for such databases).
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["key_file"] = key_file
        command.upgrade(config, "head")


def secure_sqlite_file(url: str) -> None:
    """Make a SQLite database file (and its WAL files) owner-only, creating an empty one if absent.

    SQLite creates -wal and -shm with the database file's mode, so a 0600 file keeps them 0600 too.

    Args:
        url: the database URL (anything but a SQLite file is left alone).
    """
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_owner_only(path, "")
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.chmod(part, OWNER_ONLY_FILE)
