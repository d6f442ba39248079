"""Alembic environment: runs on the connection `upgrade_database` hands over (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from altcap.study.db import Base


def run_migrations_online() -> None:
    """Run migrations on the connection passed in `config.attributes["connection"]`."""
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


# Only Alembic installs `context.config`; a plain import (package walks, tests) must not run anything.
if hasattr(context, "config"):
    run_migrations_online()
