"""Sighted verifiers (issue #6): invitations, blinded one-caption pages, saving, export, analysis hand-off.

Also checks the export carries what the issue #14 "answerable" rate needs.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from study_helpers import XSS, StudyFixture, fill_form, make_study, parse_form
from test_routes import complete_session, count_answers, login, step
from typer.testing import CliRunner

from altcap.analysis import stats as analysis
from altcap.cli import app
from altcap.study.db import Participant, Trial, make_engine, make_session_factory, upgrade_database
from altcap.study.export import PARTICIPANT_COLUMNS, RESPONSE_COLUMNS, write_export
from altcap.study.freeze import create_invitations

LEAKS = ("base", "finetuned", "fine-tuned", "fine_tuned", "adapter", "lora", "model", "basecap", "tunedcap")


def invite_verifiers(study: StudyFixture, n: int = 2) -> list[str]:
    """Tokens of n new verifier invitations."""
    with make_session_factory(make_engine(study.db_url))() as db:
        return [i.token for i in create_invitations(db, n, "http://testserver", role="verifier")]


def export_rows(client: TestClient, study: StudyFixture, name: str = "responses.json"):
    login(client, study)
    response = client.get(f"/admin/export/{name}")
    assert response.status_code == 200
    return response.json() if name.endswith(".json") else list(csv.DictReader(io.StringIO(response.text)))


def test_verifier_session_stores_one_row_per_item_and_caption(
    client: TestClient, study: StudyFixture
) -> None:
    token = invite_verifiers(study, 1)[0]
    pages = complete_session(client, token, comment="The second dog is not there.")
    titles = [re.search(r"<title>(.*?)</title>", p, re.S).group(1) for p in pages]
    assert titles[0].startswith("Consent") and titles[1].startswith("Instructions")
    assert titles[2].startswith("Check 1 of 8") and "Thank you" in titles[-1]
    assert len(pages) == 2 + 8 + 1 and "DONE-42" in pages[-1]
    assert "check short descriptions" in pages[0] and "There are 8 checks" in pages[1]
    assert count_answers(study) == 8 * 3  # correctness + hallucination + note, per caption
    rows = [r for r in export_rows(client, study) if r["participant_id"] == "V001"]
    assert {r["trial_kind"] for r in rows} == {"verify"}
    seen = {(r["image"], r["system"]) for r in rows}
    assert seen == {(image, s) for image in study.captions for s in ("base", "finetuned")}
    correctness = [r for r in rows if r["item"] == "correctness"]
    flags = [r for r in rows if r["item"] == "hallucination"]
    assert len(correctness) == len(flags) == 8
    assert all(r["value"] == 3 and r["position"] in (1, 2) and r["correct"] == "" for r in correctness)
    assert all(r["value"] is False for r in flags)  # the filler picks the middle option: "no"
    notes = [r for r in rows if r["item"] == "comment"]
    assert len(notes) == 8 and all(r["system"] in ("base", "finetuned") for r in notes)
    for image in study.captions:  # one caption first, the other second, per image
        assert sorted(r["position"] for r in correctness if r["image"] == image) == [1, 2]
    assert all(list(r) == RESPONSE_COLUMNS for r in rows)


def test_verify_page_shows_image_and_one_caption_blinded(client: TestClient, study: StudyFixture) -> None:
    tokens = invite_verifiers(study, 2)
    orders = []
    for token in tokens:
        url = client.get(f"/p/{token}").headers["location"]
        for _ in range(2):
            _, url = step(client, url)
        shown = []
        while "/done" not in url:
            html, url = step(client, url)
            assert html.count('class="caption"') == 1 and "<img" in html
            assert re.findall(r'alt="([^"]*)"', html) == [
                "The photograph for this check. Its description follows."
            ]
            caption = re.search(r'<p class="caption"[^>]*>(.*?)</p>', html).group(1)
            shown.append(caption)
            body = re.sub(r'<p class="caption"[^>]*>.*?</p>', "", html).lower()
            for leak in LEAKS:
                assert not re.search(rf"\b{leak}\b", body), f"{leak!r} in verify page"
            tied = 'aria-describedby="description-text"'  # each question tied to the caption it judges
            assert f'<fieldset class="scale" id="correctness" {tied}>' in html
            assert "<legend>Is this description" in html and "Completely correct" in html
            assert f'<fieldset class="choices" id="hallucination" {tied}>' in html
        assert len(set(shown)) == 8
        orders.append(shown)
        image = client.get(f"/p/{token}/trial/0/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert orders[0] != orders[1]  # order randomised per verifier
    with make_session_factory(make_engine(study.db_url))() as db:  # ... and stored
        verifier = db.scalars(select(Participant).where(Participant.public_id == "V001")).one()
        stored = db.scalars(
            select(Trial).where(Trial.participant_id == verifier.id).order_by(Trial.trial_index)
        )
        base_captions = {image: pair[0] for image, pair in study.captions.items()}
        expected = [
            base_captions[t.image] if t.task_system == "base" else study.captions[t.image][1] for t in stored
        ]
    assert orders[0] == expected


def test_verify_errors_escaping_idempotency_and_csrf(client: TestClient, study: StudyFixture) -> None:
    token = invite_verifiers(study, 1)[0]
    url = client.get(f"/p/{token}").headers["location"]
    for _ in range(2):
        _, url = step(client, url)
    form = parse_form(client.get(url).text)
    response = client.post(form.action, data={**form.hidden, "comment": XSS})
    assert response.status_code == 422 and count_answers(study) == 0
    html = response.text
    assert 'href="#correctness-1"' in html and 'href="#hallucination-1"' in html
    assert 'aria-describedby="hallucination-error description-text"' in html
    assert 'id="hallucination-error"' in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    forged = client.post(form.action, data={**fill_form(form), "csrf": "0" * 64})
    assert forged.status_code == 400 and count_answers(study) == 0
    data = {**fill_form(form), "comment": XSS, "hallucination": "yes"}
    first, second = client.post(form.action, data=data), client.post(form.action, data=data)
    changed = client.post(form.action, data={**data, "hallucination": "no"})
    assert first.status_code == second.status_code == 303
    # A stale page's different answer is not stored, and the page shows what was recorded.
    assert changed.status_code == 409 and "<dd>Yes</dd>" in changed.text and "&lt;script&gt;" in changed.text
    assert count_answers(study) == 3
    rows = export_rows(client, study)
    assert [r["value"] for r in rows if r["item"] == "hallucination"] == [True]
    assert [r["value"] for r in rows if r["item"] == "comment"] == [XSS]


def test_admin_lists_verifiers_separately_and_can_withdraw_them(
    client: TestClient, study: StudyFixture
) -> None:
    token = invite_verifiers(study, 1)[0]
    url = client.get(f"/p/{token}").headers["location"]
    for _ in range(3):
        _, url = step(client, url)
    login(client, study)
    page = client.get("/admin/participants").text
    verifiers = page[page.index('id="verifier-heading"') : page.index("<h2>Withdraw")]
    participants = page[page.index('id="participant-heading"') : page.index('id="verifier-heading"')]
    assert "V001" in verifiers and "1 of 8" in verifiers and "P001" not in verifiers
    assert "P001" in participants and "V001" not in participants and "0 of 7" in participants
    form = parse_form(page)
    response = client.post("/admin/participants/V001/withdraw", data={**form.hidden, "reason": "test"})
    assert response.status_code == 303 and client.get(f"/p/{token}").status_code == 403
    people = export_rows(client, study, "participants.csv")
    assert list(people[0]) == PARTICIPANT_COLUMNS and PARTICIPANT_COLUMNS[-1] == "role"
    assert [(p["participant_id"], p["role"]) for p in people] == [
        ("P001", "participant"),
        ("P002", "participant"),
        ("P003", "participant"),
        ("V001", "verifier"),
    ]
    assert people[-1]["status"] == "withdrawn" and people[-1]["latin_square_row"] == ""
    assert people[0]["latin_square_row"] == "0"


def test_invite_role_verifier_cli_and_bad_role(tmp_path: Path) -> None:
    study = make_study(tmp_path, n_participants=2)
    runner = CliRunner()
    result = runner.invoke(
        app, ["study", "invite", "--role", "verifier", "--n", "3", "--run-dir", str(study.run_dir)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["V001", "V002", "V003"]
    assert all(line.split("\t")[1].startswith("http://127.0.0.1:8000/p/") for line in lines)
    more = runner.invoke(app, ["study", "invite", "--n", "1", "--run-dir", str(study.run_dir)])
    assert more.output.startswith("P003\t")  # participants keep their own numbering
    bad = runner.invoke(app, ["study", "invite", "--role", "sighted", "--run-dir", str(study.run_dir)])
    assert bad.exit_code == 2 and "role='sighted'" in bad.output


def test_verifier_invite_refuses_when_images_are_missing(tmp_path: Path) -> None:
    study = make_study(tmp_path, n_participants=0)
    (tmp_path / "design" / "images" / "img2.png").unlink()
    runner = CliRunner()
    result = runner.invoke(app, ["study", "invite", "--role", "verifier", "--run-dir", str(study.run_dir)])
    assert (
        result.exit_code == 2 and "images/img2.png" in result.output and "verifiers must see" in result.output
    )


def _export_to_disk(study: StudyFixture, out: Path) -> None:
    with make_session_factory(make_engine(study.db_url))() as db:
        write_export(db, {"usefulness", "detail"}, out)


def test_export_feeds_hallucination_analysis_and_not_the_likert_one(
    client: TestClient, study: StudyFixture, tmp_path: Path
) -> None:
    complete_session(client, study.tokens[0])
    for token in invite_verifiers(study, 2):
        url = client.get(f"/p/{token}").headers["location"]
        while "/done" not in url:
            page = client.get(url)
            form = parse_form(page.text)
            data = fill_form(form)
            if "hallucination" in form.radios:  # planted: every fine-tuned caption hallucinates
                data["hallucination"] = "yes" if "TUNEDCAP" in page.text else "no"
            url = client.post(form.action, data=data).headers["location"]
    _export_to_disk(study, tmp_path / "export")
    responses, participants, _, _ = analysis.load_export(tmp_path / "export")
    result = analysis.analyze_hallucination(responses, n_boot=200, seed=0)
    assert result["per_system"]["base"]["share"] == 0.0 and result["per_system"]["finetuned"]["share"] == 1.0
    assert result["increase"]["estimate"] == 1.0
    likert = analysis.select_likert(responses, "usefulness")
    assert set(likert["participant_id"]) == {"P001"} and len(likert) == 8
    assert analysis.select_tasks(responses)["participant_id"].unique().tolist() == ["P001"]
    assert analysis.describe_preferences(responses)["n_trials"] == 4  # P001's rating trials only
    assert participants.columns.tolist() == PARTICIPANT_COLUMNS


def test_complete_verifiers_are_not_excluded_by_the_analysis(
    client: TestClient, study: StudyFixture, tmp_path: Path
) -> None:
    complete_session(client, study.tokens[0])
    complete_session(client, invite_verifiers(study, 1)[0])
    _export_to_disk(study, tmp_path / "export")
    responses, participants, _, _ = analysis.load_export(tmp_path / "export")
    excluded = analysis.find_exclusions(responses, participants, 0.8, 0)
    assert "V001" not in {e["participant_id"] for e in excluded}
    kept = responses[~responses["participant_id"].isin({e["participant_id"] for e in excluded})]
    assert analysis.analyze_hallucination(kept, 200, 0) is not None


def test_export_supports_the_answerable_rate(client: TestClient, study: StudyFixture, tmp_path: Path) -> None:
    """Issue #14: "does not say" answers are exported as not_stated, and study.json holds the answer keys."""
    url = client.get(f"/p/{study.tokens[0]}").headers["location"]
    while "/done" not in url:
        form = parse_form(client.get(url).text)
        data = fill_form(form)
        if "not_stated" in form.checkboxes:  # the typed question: tick "does not say" instead
            data.pop("answer_text")
            data["not_stated"] = "1"
        url = client.post(form.action, data=data).headers["location"]
    _export_to_disk(study, tmp_path / "export")
    responses, _, design, _ = analysis.load_export(tmp_path / "export")
    answers = responses[responses["item"] == "task_answer"].set_index("question_id")
    assert answers.loc["q1", "value"] == "not_stated" and answers.loc["q1", "correct"] == "false"
    assert answers.loc["q2", "value"] == "grass"
    tasks = analysis.select_tasks(responses)
    assert dict(zip(tasks["question_id"], tasks["answerable"], strict=True)) == {"q1": 0.0, "q2": 1.0}
    keys = {q["question_id"]: q["answer"] for q in design["task_questions"]}
    assert keys == {"q1": "2", "q2": "grass"}
    assert [i["id"] for i in design["verifier_items"]] == ["correctness", "hallucination", "comment"]
    assert json.loads((study.run_dir / "study.json").read_text())["task_questions"][0]["question_id"] == "q1"


def test_migration_0002_marks_existing_invitations_as_participants(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from altcap.study.db import MIGRATIONS_DIR

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001_initial")
        connection.execute(text("INSERT INTO study VALUES ('s', '', '', '', '[]', '[]', 'k', 'h')"))
        connection.execute(
            text(
                "INSERT INTO participant VALUES (1, 's', 0, 'P001', 'x', 'active', 0, '', '', '', '', '', "
                "'', '', '')"
            )
        )
    upgrade_database(engine, tmp_path / "secret_key")
    with make_session_factory(engine)() as db:
        assert db.scalars(select(Participant.role)).all() == ["participant"]
