"""`altcap study init | serve | invite | export | questions`. Thin: parse flags, resolve configs, call run_*.

The analysis commands (`analyze`, `simulate`, `power`) are attached to this same `app` elsewhere.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import typer

from altcap.cli_options import (
    ConfigPath,
    Flag,
    ForceOption,
    SetOptions,
    build_parameter,
    config_command,
    fail,
    refuse_to_overwrite,
    resolve_config,
)
from altcap.study.config import StudyConfig, StudySiteConfig

app = typer.Typer(no_args_is_help=True, help="Run the blinded, accessible user study.")

SITE_FLAGS = ["run_dir", "db"]
EXPORT_OUTPUTS = ["responses.csv", "responses.json", "participants.csv", "study.json", "provenance.json"]
# `init` reads the study design from --config, so its site options are built one by one.
RunDir = build_parameter(StudySiteConfig, Flag("run_dir")).annotation
DbUrl = build_parameter(StudySiteConfig, Flag("db")).annotation


def _site(run_dir: Path | None, db: str | None, **flags: object) -> StudySiteConfig:
    return resolve_config(StudySiteConfig, None, {"run_dir": run_dir, "db": db, **flags}, None)


def run_init(config: StudyConfig, yaml_path: Path, site: StudySiteConfig) -> str:
    """Freeze the design into a new database; returns the admin secret."""
    from altcap.study.db import make_engine, make_session_factory, secure_sqlite_file, upgrade_database
    from altcap.study.freeze import freeze_study
    from altcap.study.security import KEY_FILE_NAME, make_private_dir

    make_private_dir(site.run_dir)
    secure_sqlite_file(site.resolve_db_url())
    engine = make_engine(site.resolve_db_url())
    upgrade_database(engine, site.run_dir / KEY_FILE_NAME)
    with make_session_factory(engine)() as db:
        freeze_study(db, config, yaml_path, site.run_dir)
    return (site.run_dir / "admin_secret.txt").read_text(encoding="utf-8").strip()


@app.command("init", epilog="Example: altcap study init --config study.yaml --run-dir study_run")
def init_command(
    config_path: ConfigPath = None, run_dir: RunDir = None, db: DbUrl = None, sets: SetOptions = None
) -> None:
    """Freeze study.yaml (with its sha256), captions and questions into a new study database."""
    from altcap.config import ConfigError
    from altcap.infer.captions_file import CaptionsFileError
    from altcap.study.config import QuestionsFileError
    from altcap.study.freeze import StudySetupError

    if config_path is None:
        raise fail("give the design: altcap study init --config study.yaml")
    config = resolve_config(StudyConfig, config_path, {}, sets)
    site = _site(run_dir, db)
    try:
        secret = run_init(config, config_path, site)
    except (StudySetupError, CaptionsFileError, QuestionsFileError, ConfigError) as err:
        raise fail(str(err)) from err
    typer.echo(f"study {config.study_id!r} frozen in {site.run_dir} ({site.resolve_db_url()})")
    typer.echo(f"admin secret (also in {site.run_dir / 'admin_secret.txt'}): {secret}")


@app.command("serve")
@config_command(
    StudySiteConfig,
    [*SITE_FLAGS, "host", "port", "forwarded_allow_ips"],
    example="altcap study serve --run-dir study_run --port 8000",
)
def serve_command(site: StudySiteConfig) -> None:
    """Serve the study (participants: /p/<token>; researcher: /admin)."""
    import uvicorn

    from altcap.study.app import create_app

    try:
        web_app = create_app(site)
    except ValueError as err:
        raise fail(str(err)) from err
    uvicorn.run(
        web_app,
        host=site.host,
        port=site.port,
        log_level="warning",
        proxy_headers=True,
        forwarded_allow_ips=site.forwarded_allow_ips,
    )


@app.command("invite")
@config_command(
    StudySiteConfig,
    [*SITE_FLAGS, "base_url"],
    example="altcap study invite --run-dir study_run --n 5 --csv invites.csv --base-url https://study.example.org",
)
def invite_command(
    site: StudySiteConfig,
    n: Annotated[int, typer.Option("--n", min=1, help="Invitations to create.")] = 1,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write links to this CSV.")] = None,
    valid_days: Annotated[int, typer.Option(min=1, help="Days until the links expire.")] = 90,
    role: Annotated[
        str,
        typer.Option(
            help="participant (BLV rater, ids P001...) or verifier (sighted fact checker, ids V001...)."
        ),
    ] = "participant",
) -> None:
    """Create N invitation links (printed, or written to --csv; the tokens are not stored in clear)."""
    from altcap.study.db import make_engine, make_session_factory, upgrade_database
    from altcap.study.freeze import StudySetupError, create_invitations
    from altcap.study.security import KEY_FILE_NAME

    if csv_path is not None and csv_path.exists():
        raise fail(f"{csv_path}: already exists; choose a new file so earlier links are not lost")
    engine = make_engine(site.resolve_db_url())
    upgrade_database(engine, site.run_dir / KEY_FILE_NAME)
    with make_session_factory(engine)() as session:
        try:
            invitations = create_invitations(session, n, site.resolve_base_url(), valid_days, role)
        except StudySetupError as err:
            raise fail(str(err)) from err
    if csv_path is None:
        for invitation in invitations:
            typer.echo(f"{invitation.public_id}\t{invitation.url}")
        return
    write_links_csv(csv_path, [(i.public_id, i.url) for i in invitations])
    typer.echo(f"wrote {len(invitations)} {role} invitation links to {csv_path}")


def write_links_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write invitation links to a new owner-only (0600) CSV: each link is a participant's password.

    Args:
        path: the CSV to create (never overwritten).
        rows: (participant id, link) pairs.
    """
    from altcap.study.export import neutralise_cell
    from altcap.study.security import write_owner_only

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["participant_id", "url"])
    writer.writerows([[neutralise_cell(cell) for cell in row] for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_owner_only(path, buffer.getvalue())


@app.command("export")
@config_command(
    StudySiteConfig, SITE_FLAGS, example="altcap study export --run-dir study_run --out study_export"
)
def export_command(
    site: StudySiteConfig,
    out: Annotated[Path, typer.Option("--out", help="Folder for the export files.")] = Path("study_export"),
    force: ForceOption = False,
) -> None:
    """Write responses.csv/json, participants.csv and study.json (withdrawn participants kept, marked).

    An earlier export in --out is kept unless --force.
    """
    from sqlalchemy import select

    from altcap.study.db import Study, make_engine, make_session_factory
    from altcap.study.export import write_export
    from altcap.study.trials import load_study

    refuse_to_overwrite(out, EXPORT_OUTPUTS, force)
    with make_session_factory(make_engine(site.resolve_db_url()))() as session:
        study = session.scalars(select(Study)).first()
        if study is None:
            raise fail(f"{site.resolve_db_url()}: no study here; run `altcap study init` first")
        likert_ids = {item.id for item in load_study(study).config.likert_items}
        paths = write_export(session, likert_ids, out)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("questions", epilog="Example: altcap study questions --template questions.csv")
def questions_command(
    template: Annotated[Path, typer.Option("--template", help="Starter CSV to write.")],
    config_path: ConfigPath = None,
) -> None:
    """Write a starter task-questions CSV (prefilled with the design's first images if --config is given)."""
    from altcap.study.config import QuestionsFileError, write_questions_template
    from altcap.study.freeze import StudySetupError, load_stimuli

    images: list[str] = []
    if config_path is not None:
        config = resolve_config(StudyConfig, config_path, {}, None)
        try:
            images = [
                s["image"] for s in load_stimuli(config.model_copy(update={"show_image": False}), config_path)
            ]
        except StudySetupError as err:
            raise fail(str(err)) from err
    try:
        write_questions_template(template, images)
    except QuestionsFileError as err:
        raise fail(str(err)) from err
    typer.echo(
        f"wrote {template}; fill in one row per question (choices and accepted answers separated by |)"
    )
