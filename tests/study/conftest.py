from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from study_helpers import StudyFixture, make_study
from study_pg import reset_postgres_database, start_temp_postgres

from altcap.study.app import create_app
from altcap.study.config import StudySiteConfig


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """ALTCAP_TEST_POSTGRES_URL, or a temporary Debian PostgreSQL when ALTCAP_TEST_POSTGRES=start."""
    url = os.environ.get("ALTCAP_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if os.environ.get("ALTCAP_TEST_POSTGRES") != "start":
        pytest.skip(
            "no PostgreSQL: set ALTCAP_TEST_POSTGRES_URL=postgresql://user@host/db, or "
            "ALTCAP_TEST_POSTGRES=start to run Debian's PostgreSQL in a temp cluster"
        )
    try:
        url, stop = start_temp_postgres()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    yield url
    stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def study(request: pytest.FixtureRequest, tmp_path: Path) -> StudyFixture:
    """A frozen study with 3 invitations, on SQLite and (when available) on PostgreSQL."""
    if request.param == "sqlite":
        return make_study(tmp_path)
    url = request.getfixturevalue("postgres_url")
    reset_postgres_database(url)
    return make_study(tmp_path, db_url=url)


@pytest.fixture
def client(study: StudyFixture) -> TestClient:
    site = StudySiteConfig(run_dir=study.run_dir, db=study.db_url)
    with TestClient(create_app(site), follow_redirects=False) as test_client:
        yield test_client
