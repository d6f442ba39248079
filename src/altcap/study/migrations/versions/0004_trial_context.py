"""Where each trial's image appears (issue #29): trial.context, nullable text shown above the captions.

Rows invited before this revision keep NULL (the analysis puts them in the "(no context)" group).

Revision ID: 0004_trial_context
Revises: 0003_key_file_admin_sessions
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_trial_context"
down_revision = "0003_key_file_admin_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add trial.context (NULL = the image's context is unknown)."""
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("context", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop trial.context (the frozen design still holds each image's context in study.stimuli_json)."""
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("context")
