"""CLI: init freezes the design, invite writes links, export writes the schema files; migration == models."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from study_helpers import write_study_files
from typer.testing import CliRunner

from altcap.cli import app
from altcap.study.config import QUESTION_COLUMNS, load_task_questions
from altcap.study.db import Base, make_engine, upgrade_database
from altcap.study.export import RESPONSE_COLUMNS

runner = CliRunner()


def test_init_invite_export_round_trip(tmp_path: Path) -> None:
    yaml_path = write_study_files(tmp_path / "design")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["study", "init", "--config", str(yaml_path), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    frozen = json.loads((run_dir / "study.json").read_text())
    assert frozen["design_sha256"] == hashlib.sha256(yaml_path.read_bytes()).hexdigest()
    assert (run_dir / "study.frozen.yaml").read_bytes() == yaml_path.read_bytes()
    assert (run_dir / "admin_secret.txt").stat().st_mode & 0o077 == 0
    again = runner.invoke(app, ["study", "init", "--config", str(yaml_path), "--run-dir", str(run_dir)])
    assert again.exit_code == 2 and "already holds study" in again.output

    links = tmp_path / "links.csv"
    result = runner.invoke(
        app,
        [
            "study",
            "invite",
            "--n",
            "30",
            "--run-dir",
            str(run_dir),
            "--csv",
            str(links),
            "--base-url",
            "https://study.example.org",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(links.open()))
    assert len(rows) == 30 and len({r["url"] for r in rows}) == 30
    assert all(
        r["url"].startswith("https://study.example.org/p/") and len(r["url"].rsplit("/", 1)[1]) >= 32
        for r in rows
    )
    assert (
        runner.invoke(app, ["study", "invite", "--run-dir", str(run_dir), "--csv", str(links)]).exit_code == 2
    )
    printed = runner.invoke(app, ["study", "invite", "--n", "2", "--run-dir", str(run_dir)])
    assert printed.output.splitlines()[0].startswith("P031\thttp://127.0.0.1:8000/p/")

    out = tmp_path / "export"
    assert (
        runner.invoke(app, ["study", "export", "--run-dir", str(run_dir), "--out", str(out)]).exit_code == 0
    )
    assert (out / "responses.csv").read_text().splitlines() == [",".join(RESPONSE_COLUMNS)]
    assert len((out / "participants.csv").read_text().splitlines()) == 33
    assert json.loads((out / "study.json").read_text())["design_sha256"] == frozen["design_sha256"]
    assert json.loads((out / "provenance.json").read_text())["design_sha256"] == frozen["design_sha256"]


def test_init_reports_missing_captions_file(tmp_path: Path) -> None:
    yaml_path = write_study_files(tmp_path / "design")
    (tmp_path / "design" / "finetuned.jsonl").unlink()
    result = runner.invoke(
        app, ["study", "init", "--config", str(yaml_path), "--run-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "captions file not found" in result.output.replace("\n", "")


def test_questions_template_is_loadable_and_never_overwrites(tmp_path: Path) -> None:
    yaml_path = write_study_files(tmp_path / "design")
    template = tmp_path / "questions.csv"
    result = runner.invoke(
        app, ["study", "questions", "--template", str(template), "--config", str(yaml_path)]
    )
    assert result.exit_code == 0, result.output
    assert template.read_text().splitlines()[0] == ",".join(QUESTION_COLUMNS)
    questions = load_task_questions(template)
    assert [q.image for q in questions] == ["images/img0.png", "images/img1.png", "images/img2.png"]
    assert runner.invoke(app, ["study", "questions", "--template", str(template)]).exit_code == 2


def test_migration_matches_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade_database(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
