"""Issue #28, checks before the body is read: rate limits, upload before auth, body caps, tokens kept out
of logs, odd digits / huge indexes / NUL bytes, file parts (route cases on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from study_helpers import StudyFixture, fill_form, parse_form
from test_routes import count_answers, login, step

from altcap.study.app import create_app
from altcap.study.config import StudySiteConfig


def site_of(study: StudyFixture, **fields) -> StudySiteConfig:
    return StudySiteConfig(run_dir=study.run_dir, db=study.db_url, **fields)


def open_first_trial(client: TestClient, token: str) -> str:
    """Consent and instructions done; returns the practice trial's URL."""
    url = client.get(f"/p/{token}").headers["location"]
    for _ in range(2):
        _, url = step(client, url)
    return url.split("?")[0]


def try_secret(client: TestClient, secret: str):
    form = parse_form(client.get("/admin/login").text)
    return client.post("/admin/login", data={**form.hidden, "secret": secret})


def test_rate_limit_failed_admin_logins_per_client_then_429_and_log(
    study: StudyFixture, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(site_of(study))
    with TestClient(app, client=("192.0.2.1", 1), follow_redirects=False) as attacker:
        assert [try_secret(attacker, f"guess{i}").status_code for i in range(10)] == [401] * 10
        with caplog.at_level(logging.WARNING, logger="altcap.study"):
            refused = try_secret(attacker, study.admin_secret)  # the 11th attempt, even with the secret
        assert refused.status_code == 429 and "Too many attempts" in refused.text
        assert "retry-after" in refused.headers
        assert any("rate limit" in r.getMessage() and "192.0.2.1" in r.getMessage() for r in caplog.records)
    with TestClient(app, client=("192.0.2.2", 1), follow_redirects=False) as researcher:
        assert try_secret(researcher, study.admin_secret).status_code == 303  # other clients unaffected


def test_rate_limit_admin_account_total_never_blocks_participants(study: StudyFixture) -> None:
    site = site_of(study, admin_login_failures_per_client="3/15 minutes", admin_login_failures_total="5/hour")
    app = create_app(site)
    for host, tries in (("192.0.2.1", 3), ("192.0.2.2", 2)):
        with TestClient(app, client=(host, 1), follow_redirects=False) as attacker:
            assert [try_secret(attacker, "guess").status_code for _ in range(tries)] == [401] * tries
    with TestClient(app, client=("192.0.2.3", 1), follow_redirects=False) as other:
        assert try_secret(other, study.admin_secret).status_code == 429  # the account's limit is spent
        assert other.get(f"/p/{study.tokens[0]}").status_code == 303  # participants are not affected


def test_rate_limit_unknown_participant_links_per_client(
    study: StudyFixture, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(site_of(study))
    with TestClient(app, client=("192.0.2.1", 1), follow_redirects=False) as guesser:
        assert {guesser.get(f"/p/guess{i}").status_code for i in range(30)} == {404}
        with caplog.at_level(logging.WARNING, logger="altcap.study"):
            assert guesser.get("/p/guess31").status_code == 429
            assert guesser.get(f"/p/{study.tokens[0]}").status_code == 429  # no more lookups at all
        assert any("rate limit" in r.getMessage() for r in caplog.records)
    with TestClient(app, client=("192.0.2.9", 1), follow_redirects=False) as participant:
        assert participant.get(f"/p/{study.tokens[0]}").status_code == 303


async def call_asgi(app, method: str, path: str, headers: list, chunks: list[bytes]) -> tuple[int, int]:
    """Send a request straight to the ASGI app; returns (status, body chunks the app pulled)."""
    pulled, status = 0, 0

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        more = pulled < len(chunks)
        return {"type": "http.request", "body": chunks[pulled - 1] if chunks else b"", "more_body": more}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("192.0.2.1", 1),
        "server": ("testserver", 80),
        "root_path": "",
    }
    await app(scope, receive, send)
    return status, pulled


def test_upload_before_auth_refused_before_the_body_is_read(client: TestClient, study: StudyFixture) -> None:
    app = create_app(site_of(study))
    megabyte = [b"x" * (1 << 20)] * 400
    multipart = [(b"content-type", b"multipart/form-data; boundary=zzz")]
    chunked = [*multipart, (b"transfer-encoding", b"chunked")]
    assert asyncio.run(call_asgi(app, "POST", "/p/not-a-token/trial/0", chunked, megabyte)) == (404, 0)
    assert asyncio.run(call_asgi(app, "POST", "/admin/logout", chunked, megabyte)) == (303, 0)
    declared = [*multipart, (b"content-length", str(400 << 20).encode())]
    token = study.tokens[0]
    assert asyncio.run(call_asgi(app, "POST", f"/p/{token}/trial/0", declared, megabyte)) == (413, 0)
    # A valid link with a chunked (length-less) form: cut off just past the 64 KB cap.
    form = [(b"content-type", b"application/x-www-form-urlencoded"), (b"transfer-encoding", b"chunked")]
    status, pulled = asyncio.run(call_asgi(app, "POST", f"/p/{token}/trial/0", form, [b"y" * 40_000] * 50))
    assert status == 413 and pulled == 2
    url = open_first_trial(client, token)
    data = fill_form(parse_form(client.get(url).text), comment="fine")
    too_big = client.post(url, data={**data, "extra": "z" * 70_000})
    assert too_big.status_code == 413 and "too large" in too_big.text and count_answers(study) == 0
    assert client.post(url, data=data).status_code == 303


def test_token_not_logged_by_the_app_or_uvicorn_access_log(
    study: StudyFixture, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from altcap.study.security import hash_prefix

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Another test in this process may have run uvicorn with its default logging config, which stops
    # its loggers from propagating to the root logger that caplog listens on.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    config = uvicorn.Config(
        create_app(site_of(study)), port=port, log_config=None, access_log=True, log_level="info"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    with caplog.at_level(logging.INFO):
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/p/{study.tokens[0]}/consent").status_code == 200
        assert httpx.get(f"{base}/p/unknown-token-value-123").status_code == 404
        server.should_exit = True
        thread.join(timeout=10)
    server_side = [r for r in caplog.records if r.name.startswith(("uvicorn", "altcap"))]  # not httpx's
    messages = "\n".join(record.getMessage() for record in server_side)
    assert "GET /p/#" in messages  # the access log ran, with the token replaced by its hash prefix
    assert study.tokens[0] not in messages and "unknown-token-value-123" not in messages
    assert hash_prefix(study.tokens[0]) in messages and hash_prefix("unknown-token-value-123") in messages


def test_unicode_digits_and_huge_trial_index_get_4xx(client: TestClient, study: StudyFixture) -> None:
    token = study.tokens[0]
    url = open_first_trial(client, token)
    for bad in ("²", "٣", "10" + "0" * 30, "-1", "99999999999"):
        for path in (f"/p/{token}/trial/{bad}", f"/p/{token}/trial/{bad}/image"):
            assert 400 <= client.get(path).status_code < 500, path
        assert 400 <= client.post(f"/p/{token}/trial/{bad}", data={"x": "1"}).status_code < 500
    data = fill_form(parse_form(client.get(url).text))
    nonce_parts = data["nonce"].split(".")
    for changed in (
        {"usefulness-1": "²"},
        {"usefulness-1": "٣"},
        {"nonce": ".".join(["²", *nonce_parts[1:]])},
        {"nonce": ".".join([nonce_parts[0], "9" * 40, nonce_parts[2]])},
    ):
        response = client.post(url, data={**data, **changed})
        assert 400 <= response.status_code < 500, changed
    assert count_answers(study) == 0
    assert client.post(url, data=data).status_code == 303  # the same form, well-formed: stored


def test_nul_byte_in_a_form_field_or_path_gets_4xx(client: TestClient, study: StudyFixture) -> None:
    token = study.tokens[0]
    url = open_first_trial(client, token)
    data = fill_form(parse_form(client.get(url).text))
    for changed in ({"comment": "nul \x00 byte"}, {"comment\x00": "x"}):
        response = client.post(url, data={**data, **changed})
        assert response.status_code == 400 and "cannot be stored" in response.text, changed
    assert client.get(f"/p/{token}/x%00y").status_code == 400
    assert client.get("/p/%00").status_code == 400
    assert count_answers(study) == 0
    login(client, study)
    tokens = parse_form(client.get("/admin/participants").text).hidden
    response = client.post("/admin/participants/P001/withdraw", data={**tokens, "reason": "a\x00b"})
    assert response.status_code == 400
    assert client.post("/admin/participants/P%00/withdraw", data={**tokens, "reason": "x"}).status_code == 400
    assert client.get(f"/p/{token}").status_code == 303  # not withdrawn


def test_file_part_rejected_never_stored_as_the_comment(client: TestClient, study: StudyFixture) -> None:
    url = open_first_trial(client, study.tokens[0])
    data = fill_form(parse_form(client.get(url).text))
    data.pop("comment", None)
    upload = {"comment": ("notes.txt", b"=cmd|' /C calc'!A0", "text/plain")}
    response = client.post(url, data=data, files=upload)
    assert response.status_code == 400 and "file" in response.text and count_answers(study) == 0
    assert client.post(url, data=data).status_code == 303  # the same answers without the file: stored
    consent_page = f"/p/{study.tokens[1]}/consent"
    hidden = parse_form(client.get(consent_page).text).hidden
    files = {"agree": ("a.txt", b"yes", "text/plain")}
    assert client.post(consent_page, data=hidden, files=files).status_code == 400


@pytest.mark.parametrize("path", ["/", "/static/study.css"])
def test_upload_before_auth_cap_applies_to_every_path(path: str, study: StudyFixture) -> None:
    app = create_app(site_of(study))
    header = [(b"content-length", str(1 << 30).encode())]
    assert asyncio.run(call_asgi(app, "POST", path, header, [b""])) == (413, 0)
