"""Route tests with TestClient: a whole session, idempotency, tokens, admin, export, XSS/SQLi, blinding."""

from __future__ import annotations

import csv
import io
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from study_helpers import SQLI, XSS, StudyFixture, fill_form, parse_form, trial_index_of

from altcap.study.db import Answer, Participant, make_engine, make_session_factory
from altcap.study.export import PARTICIPANT_COLUMNS, RESPONSE_COLUMNS


def count_answers(study: StudyFixture) -> int:
    with make_session_factory(make_engine(study.db_url))() as db:
        return db.scalar(select(func.count()).select_from(Answer)) or 0


def step(client: TestClient, url: str, comment: str = "") -> tuple[str, str]:
    """GET a page, submit its form filled in; returns (page html, next url)."""
    page = client.get(url)
    assert page.status_code == 200, page.text
    form = parse_form(page.text)
    response = client.post(form.action, data=fill_form(form, comment))
    assert response.status_code == 303, response.text
    return page.text, response.headers["location"]


def complete_session(client: TestClient, token: str, comment: str = "") -> list[str]:
    """Drive one participant from the link to the thank-you page; returns every page's html."""
    url = client.get(f"/p/{token}").headers["location"]
    pages = []
    while "/done" not in url:
        html, url = step(client, url, comment)
        pages.append(html)
        assert len(pages) < 50
    pages.append(client.get(url).text)
    return pages


def login(client: TestClient, study: StudyFixture) -> None:
    form = parse_form(client.get("/admin/login").text)
    response = client.post("/admin/login", data={**form.hidden, "secret": study.admin_secret})
    assert response.status_code == 303


def test_whole_session_reaches_thank_you_with_code(client: TestClient, study: StudyFixture) -> None:
    pages = complete_session(client, study.tokens[0], comment="Clear enough.")
    titles = [re.search(r"<title>(.*?)</title>", p, re.S).group(1) for p in pages]
    assert titles[0].startswith("Consent") and titles[1].startswith("Instructions")
    assert titles[2].startswith("Practice trial")
    assert "Trial 1 of 7" in pages[3]  # 2 task + 4 rating + 1 attention
    assert any("Trial 7 of 7" in p for p in pages)
    assert "DONE-42" in pages[-1] and "Thank you" in pages[-1]
    # practice 2x2 likert + pref + comment = 6; 4 ratings x 6; 2 tasks x 2; 1 attention
    assert count_answers(study) == 6 + 4 * 6 + 2 * 2 + 1
    assert "Answer saved" in client.get(f"/p/{study.tokens[0]}/done?saved=1").text


def test_resume_goes_to_next_open_trial(client: TestClient, study: StudyFixture) -> None:
    url = client.get(f"/p/{study.tokens[1]}").headers["location"]
    for _ in range(4):
        _, url = step(client, url)
    resumed = client.get(f"/p/{study.tokens[1]}").headers["location"]
    assert resumed == url.split("?")[0] and trial_index_of(resumed) == 2


def test_double_submit_and_retry_store_one_answer(client: TestClient, study: StudyFixture) -> None:
    url = client.get(f"/p/{study.tokens[0]}").headers["location"]
    for _ in range(2):
        _, url = step(client, url)
    form = parse_form(client.get(url).text)
    data = fill_form(form)
    first = client.post(form.action, data=data)
    stored = count_answers(study)
    second = client.post(form.action, data=data)
    assert first.status_code == second.status_code == 303
    assert second.headers["location"] == first.headers["location"]
    assert count_answers(study) == stored == 5  # 2 captions x 2 items + preference; empty comment: no row


def test_missing_answers_show_error_summary_tied_to_fields(client: TestClient, study: StudyFixture) -> None:
    url = client.get(f"/p/{study.tokens[0]}").headers["location"]
    for _ in range(2):
        _, url = step(client, url)
    form = parse_form(client.get(url).text)
    response = client.post(form.action, data={**form.hidden, "comment": XSS})
    assert response.status_code == 422
    html = response.text
    assert "<title>Error: " in html and 'class="error-summary" role="alert"' in html
    assert 'href="#usefulness-1-1"' in html
    assert 'aria-describedby="usefulness-1-error description-1-text"' in html
    assert 'id="usefulness-1-error"' in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert count_answers(study) == 0


def test_bad_csrf_is_rejected_and_nothing_stored(client: TestClient, study: StudyFixture) -> None:
    url = client.get(f"/p/{study.tokens[0]}").headers["location"]
    form = parse_form(client.get(url).text)
    response = client.post(form.action, data={**fill_form(form), "csrf": "0" * 64})
    assert response.status_code == 400 and "could not be saved" in response.text
    forged = client.post(f"/p/{study.tokens[0]}/trial/0", data={"nonce": "1.2.3", "csrf": "x"})
    assert forged.status_code == 400


def test_invalid_withdrawn_and_expired_links_get_clear_pages(client: TestClient, study: StudyFixture) -> None:
    for bad in ("nope", SQLI, "a" * 300):
        response = client.get(f"/p/{bad}/consent")
        assert response.status_code == 404 and "This link does not work" in response.text
        assert "Traceback" not in response.text and response.headers["content-type"].startswith("text/html")
    with make_session_factory(make_engine(study.db_url))() as db:
        p1, p2 = db.scalars(select(Participant).order_by(Participant.id)).all()[:2]
        p1.status = "withdrawn"
        p2.expires_at = "2000-01-01T00:00:00.000+00:00"
        db.commit()
    withdrawn = client.get(f"/p/{study.tokens[0]}")
    assert withdrawn.status_code == 403 and "participation has ended" in withdrawn.text
    expired = client.get(f"/p/{study.tokens[1]}")
    assert expired.status_code == 410 and "expired" in expired.text
    assert client.get("/no/such/page").status_code == 404
    assert client.get(f"/p/{study.tokens[2]}/trial/notanumber").status_code == 400


def test_admin_pages_and_exports_need_the_secret(client: TestClient, study: StudyFixture) -> None:
    for path in ("/admin/participants", "/admin/export/responses.csv", "/admin/export/study.json"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    form = parse_form(client.get("/admin/login").text)
    wrong = client.post("/admin/login", data={**form.hidden, "secret": "guess"})
    assert wrong.status_code == 401 and "not correct" in wrong.text
    client.cookies.set("altcap_admin", "forged.cookie.value")
    assert client.get("/admin/participants").status_code == 303
    login(client, study)
    page = client.get("/admin/participants")
    assert page.status_code == 200 and "P001" in page.text and "0 of 7" in page.text


def test_withdraw_keeps_and_marks_data_and_escapes_reason(client: TestClient, study: StudyFixture) -> None:
    complete_session(client, study.tokens[0], comment=SQLI)
    login(client, study)
    form = parse_form(client.get("/admin/participants").text)
    response = client.post("/admin/participants/P001/withdraw", data={**form.hidden, "reason": XSS})
    assert response.status_code == 303
    page = client.get("/admin/participants").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert client.get(f"/p/{study.tokens[0]}").status_code == 403
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/export/responses.csv").text)))
    assert rows and {r["participant_status"] for r in rows} == {"withdrawn"}
    assert next(r["value"] for r in rows if r["item"] == "comment") == SQLI  # stored verbatim, tables intact
    people = list(csv.DictReader(io.StringIO(client.get("/admin/export/participants.csv").text)))
    assert people[0]["withdraw_reason"] == XSS and people[0]["withdrawn_at"]


def test_export_has_exact_columns_and_decoded_systems(client: TestClient, study: StudyFixture) -> None:
    complete_session(client, study.tokens[0])
    login(client, study)
    text = client.get("/admin/export/responses.csv").text
    assert text.splitlines()[0] == ",".join(RESPONSE_COLUMNS)
    rows = client.get("/admin/export/responses.json").json()
    assert all(list(r) == RESPONSE_COLUMNS for r in rows)
    kinds = {r["trial_kind"] for r in rows}
    assert kinds == {"practice", "rating", "attention", "task"}
    likert = [r for r in rows if r["item"] == "usefulness"]
    assert all(
        isinstance(r["value"], int) and r["system"] in ("base", "finetuned") and r["position"] in (1, 2)
        for r in likert
    )
    prefs = [r for r in rows if r["item"] == "preference" and r["trial_kind"] == "rating"]
    assert all(r["value"] in ("base", "finetuned") and r["position"] == 1 for r in prefs)  # filler picks 1
    tasks = [r for r in rows if r["item"] == "task_answer"]
    assert len(tasks) == 2 and all(isinstance(r["response_ms"], int) and r["response_ms"] >= 0 for r in tasks)
    by_q = {r["question_id"]: r for r in tasks}
    assert by_q["q1"]["value"] == "two" and by_q["q1"]["correct"] is True
    assert by_q["q2"]["value"] == "grass" and by_q["q2"]["correct"] is True
    attention = next(r for r in rows if r["item"] == "attention")
    assert attention["value"] == "Red" and attention["correct"] is False
    header = client.get("/admin/export/participants.csv").text.splitlines()[0]
    assert header == ",".join(PARTICIPANT_COLUMNS)
    design = client.get("/admin/export/study.json").json()
    assert len(design["design_sha256"]) == 64 and design["study_id"] == "test-study"


def test_pages_do_not_reveal_which_system_wrote_a_caption(client: TestClient, study: StudyFixture) -> None:
    orders = set()
    for token in study.tokens:
        for html in complete_session(client, token):
            if html.count('class="caption"') != 2:
                continue
            lowered = html.lower()
            for leak in ("base", "finetuned", "fine-tuned", "fine_tuned", "adapter", "lora", "model"):
                assert not re.search(rf"\b{leak}\b", lowered), f"{leak!r} in page"
            assert re.findall(r'alt="([^"]*)"', html) == [
                "The photograph for this trial. Its two descriptions follow."
            ]
            if "<title>Practice trial" in html:
                continue  # the shipped example, not a study image
            orders.add(html.index("BASECAP") < html.index("TUNEDCAP"))
            assert re.findall(r'alt="([^"]*)"', html) == [
                "The photograph for this trial. Its two descriptions follow."
            ]
    assert orders == {True, False}


def test_image_is_served_only_for_rating_trials(client: TestClient, study: StudyFixture) -> None:
    complete_session(client, study.tokens[0])
    image = client.get(f"/p/{study.tokens[0]}/trial/0/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert client.get(f"/p/{study.tokens[0]}/trial/99/image").status_code == 404


def test_security_headers_and_landmarks(client: TestClient, study: StudyFixture) -> None:
    response = client.get(f"/p/{study.tokens[0]}/consent")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert '<html lang="en">' in html and html.count("<h1") == 1
    for landmark in (
        "<header",
        "<nav",
        "<main",
        "<footer",
        'class="skip-link" href="#main"',
        'role="status"',
    ):
        assert landmark in html


def test_future_trial_image_refused_before_consent_and_before_reached(
    client: TestClient, study: StudyFixture
) -> None:
    token = study.tokens[0]
    with make_session_factory(make_engine(study.db_url))() as db:
        participant = db.scalars(select(Participant).where(Participant.public_id == "P001")).one()
        rating = [t.trial_index for t in participant_trials(db, participant.id) if t.kind == "rating"]
    assert client.get(f"/p/{token}/trial/0/image").status_code == 404  # before consent: not even practice
    assert client.get(f"/p/{token}/trial/{rating[0]}/image").status_code == 404
    url = client.get(f"/p/{token}").headers["location"]
    for _ in range(2):
        _, url = step(client, url)
    assert client.get(f"/p/{token}/trial/0/image").status_code == 200  # the trial it is on
    for index in rating:
        assert client.get(f"/p/{token}/trial/{index}/image").status_code == 404  # later trials
    while trial_index_of(url) is not None and trial_index_of(url) < rating[0]:
        _, url = step(client, url)
    assert client.get(f"/p/{token}/trial/{rating[0]}/image").status_code == 200
    assert client.get(f"/p/{token}/trial/{rating[1]}/image").status_code == 404
    _, url = step(client, url)
    assert client.get(f"/p/{token}/trial/{rating[0]}/image").status_code == 200  # one it has done


def participant_trials(db, participant_id: int) -> list:
    from altcap.study.db import Trial

    query = select(Trial).where(Trial.participant_id == participant_id).order_by(Trial.trial_index)
    return db.scalars(query).all()


def test_stale_form_replay_shows_the_recorded_value(client: TestClient, study: StudyFixture) -> None:
    url = client.get(f"/p/{study.tokens[0]}").headers["location"]
    for _ in range(3):
        _, url = step(client, url)  # consent, instructions, practice: now on trial 1
    form = parse_form(client.get(url).text)
    data = fill_form(form)
    assert client.post(form.action, data=data).status_code == 303
    stored = count_answers(study)
    retry = client.post(form.action, data=data)  # the same answer again (a lost response): acknowledged
    assert retry.status_code == 303 and "saved=1" in retry.headers["location"]
    changed = {**data, "confidence": "1"} if "confidence" in data else {**data, "preference": "2"}
    stale = client.post(form.action, data=changed)
    assert stale.status_code == 409 and "Answer saved" not in stale.text
    assert "already saved" in stale.text and "not saved" in stale.text
    recorded = re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", stale.text, re.S)
    assert ("How confident are you in your answer?", "3") in recorded or (
        "Which description would you rather have for this photograph?",
        "Description 1",
    ) in recorded
    assert not re.search(r"\b(base|finetuned)\b", stale.text)  # the recorded preference stays blinded
    assert count_answers(study) == stored


def test_practice_image_never_a_study_image_in_a_simulated_65_person_study(tmp_path) -> None:
    """SIMULATED: 65 invitations of the test design; no practice trial shows a task or rating image."""
    from study_helpers import make_study

    from altcap.study.db import Trial
    from altcap.study.practice import PRACTICE_EXAMPLE_IMAGE, PRACTICE_EXAMPLE_PATH

    study = make_study(tmp_path, n_participants=65)
    with make_session_factory(make_engine(study.db_url))() as db:
        trials = db.scalars(select(Trial)).all()
    practice = [t for t in trials if t.kind == "practice"]
    counted = {t.image for t in trials if t.kind in ("task", "rating")}
    assert len(practice) == 65 and {t.image for t in practice} == {PRACTICE_EXAMPLE_IMAGE}
    assert counted == set(study.captions) and not counted & {t.image for t in practice}
    from altcap.study.app import create_app
    from altcap.study.config import StudySiteConfig

    with TestClient(create_app(StudySiteConfig(run_dir=study.run_dir)), follow_redirects=False) as client:
        url = client.get(f"/p/{study.tokens[0]}").headers["location"]
        for _ in range(2):
            _, url = step(client, url)
        page = client.get(url).text
        assert "<title>Practice trial" in page and "a cup of coffee on a table" in page
        assert "BASECAP" not in page and "TUNEDCAP" not in page
        assert client.get(f"/p/{study.tokens[0]}/trial/0/image").content == PRACTICE_EXAMPLE_PATH.read_bytes()


def test_practice_image_set_aside_at_init_is_never_a_task_rating_or_verify_image(tmp_path) -> None:
    import yaml
    from study_helpers import write_study_files

    from altcap.study.commands import run_init
    from altcap.study.config import StudyConfig, StudySiteConfig
    from altcap.study.db import Trial
    from altcap.study.freeze import StudySetupError, create_invitations

    yaml_path = write_study_files(tmp_path / "design", n_images=5)
    design = yaml.safe_load(yaml_path.read_text())
    design.update(practice_images=["images/img4.png"], n_practice_trials=2)
    yaml_path.write_text(yaml.safe_dump(design))
    site = StudySiteConfig(run_dir=tmp_path / "run")
    run_init(StudyConfig.model_validate(design), yaml_path, site)
    with make_session_factory(make_engine(site.resolve_db_url()))() as db:
        create_invitations(db, 4, "http://x")
        create_invitations(db, 2, "http://x", role="verifier")
        trials = db.scalars(select(Trial)).all()
    assert {t.image for t in trials if t.kind == "practice"} == {"images/img4.png"}
    assert "images/img4.png" not in {t.image for t in trials if t.kind != "practice"}
    design.update(questions=None, images=["images/img0.png", "images/img4.png"])
    yaml_path.write_text(yaml.safe_dump(design))
    with pytest.raises(StudySetupError, match="also in `images`"):
        run_init(StudyConfig.model_validate(design), yaml_path, StudySiteConfig(run_dir=tmp_path / "run2"))
