"""Where an image appears (issue #29): manifest -> frozen design -> trial.context -> page -> export;
migration 0004 up and down."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from study_helpers import XSS, StudyFixture, write_study_files
from test_routes import complete_session, login

from altcap.study.app import create_app
from altcap.study.commands import run_init
from altcap.study.config import StudyConfig, StudySiteConfig
from altcap.study.db import make_engine, make_session_factory, upgrade_database
from altcap.study.freeze import create_invitations

CONTEXTS = {"images/img0.png": "news article about a flood", "images/img1.png": XSS}
FLAGS = {"images/img0.png": ["blurry"], "images/img2.png": ["blurry", "underexposed"]}


def make_context_study(folder: Path) -> StudyFixture:
    """The test study plus a manifest giving two images a context and two images quality flags."""
    yaml_path = write_study_files(folder / "design", with_questions=True)
    rows = [
        {"image": f"images/img{i}.png", "captions": ["x"], "metadata": {
            **({"context": CONTEXTS[f"images/img{i}.png"]} if f"images/img{i}.png" in CONTEXTS else {}),
            "quality_flags": FLAGS.get(f"images/img{i}.png", []),
        }}
        for i in range(4)
    ]  # fmt: skip
    (yaml_path.parent / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    design = yaml.safe_load(yaml_path.read_text()) | {"manifest": "manifest.jsonl"}
    yaml_path.write_text(yaml.safe_dump(design))
    site = StudySiteConfig(run_dir=folder / "run")
    secret = run_init(StudyConfig.model_validate(design), yaml_path, site)
    with make_session_factory(make_engine(site.resolve_db_url()))() as db:
        tokens = [i.token for i in create_invitations(db, 1, "http://testserver")]
    return StudyFixture(site.run_dir, site.resolve_db_url(), tokens, secret, {})


def test_context_is_shown_escaped_and_exported_with_quality_flags(tmp_path: Path) -> None:
    study = make_context_study(tmp_path)
    site = StudySiteConfig(run_dir=study.run_dir, db=study.db_url)
    with TestClient(create_app(site), follow_redirects=False) as client:
        pages = complete_session(client, study.tokens[0])
        shown = [p for p in pages if "Where this image appears" in p]
        # img0 and img1: one rating trial each, plus one task question each (q1, q2)
        assert len(shown) == 4
        flood = [p for p in shown if "news article about a flood" in p]
        assert flood and all('<h2 id="context-heading">Where this image appears</h2>' in p for p in flood)
        assert all('aria-labelledby="context-heading"' in p for p in shown)
        assert sum("&lt;script&gt;alert" in p for p in shown) == 2  # img1's rating and task pages
        assert not any("<script>alert" in p or "<img src=x" in p for p in pages)
        for page in pages:  # the context region comes before the descriptions it frames
            if "Where this image appears" in page and "Description 1" in page:
                assert page.index("Where this image appears") < page.index("Description 1")
        login(client, study)
        exported = client.get("/admin/export/responses.csv").text
    rows = list(csv.DictReader(io.StringIO(exported)))
    ratings = [r for r in rows if r["trial_kind"] == "rating"]
    by_image = {r["image"]: (r["context"], r["quality_flags"]) for r in ratings}
    assert by_image["images/img0.png"] == ("news article about a flood", "blurry")
    assert by_image["images/img2.png"] == ("", "blurry;underexposed")
    assert by_image["images/img3.png"] == ("", "")
    assert by_image["images/img1.png"][0] == XSS  # stored as given; only the page escapes it


def test_a_missing_manifest_is_a_setup_error_naming_it(tmp_path: Path) -> None:
    from altcap.study.freeze import StudySetupError, read_image_extras

    config = StudyConfig(manifest=Path("nowhere.jsonl"))
    with pytest.raises(StudySetupError, match=r"nowhere\.jsonl: manifest not found"):
        read_image_extras(config, tmp_path)
    assert read_image_extras(StudyConfig(image_root=Path(".")), tmp_path) == {}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0004_adds_and_drops_trial_context(backend: str, tmp_path: Path, request) -> None:
    from alembic import command
    from alembic.config import Config

    from altcap.study.db import MIGRATIONS_DIR

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        from study_pg import reset_postgres_database

        url = request.getfixturevalue("postgres_url")
        reset_postgres_database(url)
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def columns() -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns("trial")}

    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003_key_file_admin_sessions")
        connection.execute(text(
            "INSERT INTO study (study_id, design_yaml, design_sha256, frozen_at, stimuli_json, "
            "questions_json, admin_secret_sha256) VALUES ('s', '', '', '', '[]', '[]', 'h')"
        ))
        connection.execute(text(
            "INSERT INTO participant (id, study_id, participant_index, public_id, token_sha256, status, "
            "latin_square_row, invited_at, expires_at, started_at, consented_at, completed_at, withdrawn_at, "
            "withdraw_reason, completion_code, role) "
            "VALUES (1, 's', 0, 'P001', 'x', 'active', 0, '', '', '', '', '', '', '', '', 'participant')"
        ))
        connection.execute(text(
            "INSERT INTO trial (id, participant_id, trial_index, kind, image, question_id, base_position, "
            "task_system, attention_index) VALUES (1, 1, 0, 'rating', 'a.png', '', 1, '', -1)"
        ))  # fmt: skip
    assert "context" not in columns()
    upgrade_database(engine)
    assert "context" in columns()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT context FROM trial")).scalar_one() is None
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003_key_file_admin_sessions")
    assert "context" not in columns()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT image FROM trial")).scalar_one() == "a.png"
    engine.dispose()
