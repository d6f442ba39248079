"""Initial study schema: study, participant, trial, submission, answer.

Revision ID: 0001_initial
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _iso() -> sa.String:
    return sa.String(40)


def upgrade() -> None:
    """Create every study table."""
    _create_study_and_participant()
    _create_trial_submission_answer()


def _create_study_and_participant() -> None:
    op.create_table(
        "study",
        sa.Column("study_id", sa.String(100), primary_key=True),
        sa.Column("design_yaml", sa.Text(), nullable=False),
        sa.Column("design_sha256", sa.String(64), nullable=False),
        sa.Column("frozen_at", _iso(), nullable=False),
        sa.Column("stimuli_json", sa.Text(), nullable=False),
        sa.Column("questions_json", sa.Text(), nullable=False),
        sa.Column("secret_key", sa.String(100), nullable=False),
        sa.Column("admin_secret_sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "participant",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.String(100), sa.ForeignKey("study.study_id"), nullable=False),
        sa.Column("participant_index", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(20), nullable=False, unique=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("latin_square_row", sa.Integer(), nullable=False),
        sa.Column("invited_at", _iso(), nullable=False),
        sa.Column("expires_at", _iso(), nullable=False),
        sa.Column("started_at", _iso(), nullable=False),
        sa.Column("consented_at", _iso(), nullable=False),
        sa.Column("completed_at", _iso(), nullable=False),
        sa.Column("withdrawn_at", _iso(), nullable=False),
        sa.Column("withdraw_reason", sa.Text(), nullable=False),
        sa.Column("completion_code", sa.String(100), nullable=False),
    )


def _create_trial_submission_answer() -> None:
    op.create_table(
        "trial",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("participant_id", sa.Integer(), sa.ForeignKey("participant.id"), nullable=False),
        sa.Column("trial_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        sa.Column("question_id", sa.String(100), nullable=False),
        sa.Column("base_position", sa.Integer(), nullable=False),
        sa.Column("task_system", sa.String(20), nullable=False),
        sa.Column("attention_index", sa.Integer(), nullable=False),
        sa.UniqueConstraint("participant_id", "trial_index", name="uq_trial_order"),
    )
    op.create_index("ix_trial_participant_id", "trial", ["participant_id"])
    op.create_table(
        "submission",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trial.id"), nullable=False, unique=True),
        sa.Column("submitted_at", _iso(), nullable=False),
    )
    op.create_table(
        "answer",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("participant_id", sa.Integer(), sa.ForeignKey("participant.id"), nullable=False),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trial.id"), nullable=False),
        sa.Column("item", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(20), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("question_id", sa.String(100), nullable=False),
        sa.Column("response_ms", sa.Integer(), nullable=True),
        sa.Column("started_at", _iso(), nullable=False),
        sa.Column("submitted_at", _iso(), nullable=False),
        sa.UniqueConstraint("participant_id", "trial_id", "item", "position", name="uq_answer_once"),
    )
    op.create_index("ix_answer_participant_id", "answer", ["participant_id"])


def downgrade() -> None:
    """Drop every study table (data loss: only for throw-away databases)."""
    for table in ("answer", "submission", "trial", "participant", "study"):
        op.drop_table(table)
