"""PostgreSQL for the route suite: an existing server (ALTCAP_TEST_POSTGRES_URL), or a throw-away
cluster of Debian's PostgreSQL started for the test session (ALTCAP_TEST_POSTGRES=start)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from altcap.study.db import make_engine


def reset_postgres_database(url: str) -> None:
    """Drop every table (and Alembic's version table) so each test starts from an empty schema."""
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root, so drop to the Debian `postgres` user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start_temp_postgres() -> tuple[str, Callable[[], None]]:
    """initdb + pg_ctl start a cluster on a free loopback port; returns (url, stop function).

    Raises:
        FileNotFoundError: when Debian's PostgreSQL server binaries are absent (apt-get install postgresql).
    """
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bindirs:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/pg_ctl; apt-get install -y postgresql")
    bindir = Path(bindirs[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="altcap-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(folder / "log"), "start"]
        ),
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop
