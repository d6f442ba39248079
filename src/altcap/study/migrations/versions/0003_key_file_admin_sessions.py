"""Signing key out of the database into run_dir/secret_key; server-side admin sessions (issue #28).

An older database holds the key in study.secret_key: it is written once to the key file handed over
by `upgrade_database` (mode 0600), then the column is dropped, so a copy of the database can no longer
forge an admin cookie. Sign-in sessions get their own table so sign-out can revoke a cookie.

Revision ID: 0003_key_file_admin_sessions
Revises: 0002_verifier_role
Create Date: 2026-12-06
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

from altcap.study.security import KeyFileError, store_signing_key

revision = "0003_key_file_admin_sessions"
down_revision = "0002_verifier_role"
branch_labels = None
depends_on = None


def _move_key_to_file() -> None:
    keys = [k for k in op.get_bind().execute(sa.text("SELECT secret_key FROM study")).scalars() if k]
    if not keys:
        return
    key_file = context.config.attributes.get("key_file")
    if key_file is None:
        raise KeyFileError(
            "this study database still holds its signing key; run the command with --run-dir set to "
            "the study's run folder so the key can be moved into run_dir/secret_key (mode 0600)"
        )
    store_signing_key(Path(key_file), keys[0])


def upgrade() -> None:
    """Move the key to its file, drop study.secret_key, add admin_session."""
    _move_key_to_file()
    # Plain DROP COLUMN (SQLite >= 3.35): a batch copy of `study` trips the participants' foreign key.
    op.execute("ALTER TABLE study DROP COLUMN secret_key")
    op.create_table(
        "admin_session",
        sa.Column("session_sha256", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    """Drop admin_session and restore an empty study.secret_key (the key stays in its file)."""
    op.drop_table("admin_session")
    op.add_column("study", sa.Column("secret_key", sa.String(100), nullable=False, server_default=""))
