"""Verifier role: participant.role ("participant" | "verifier"), existing rows become participants.

Revision ID: 0002_verifier_role
Revises: 0001_initial
Create Date: 2025-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_verifier_role"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add participant.role; every row invited before this revision is a participant."""
    with op.batch_alter_table("participant") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="participant"))


def downgrade() -> None:
    """Drop participant.role (verifiers then look like participants: only for throw-away databases)."""
    with op.batch_alter_table("participant") as batch:
        batch.drop_column("role")
