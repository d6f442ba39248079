"""`altcap run`: the one-command pipeline (torch is imported only once a stage runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from altcap.cli_options import config_command, fail
from altcap.pipeline.run import RunConfig


def default_config_path() -> Path:
    """The embedded default: configs/demo.yaml inside the package."""
    return Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


@config_command(
    RunConfig,
    ["run_dir", "manifest", "model.model_id"],
    example="altcap run --set train.max_steps=2 --run-dir runs/try",
    config_argument=True,
    default_config=default_config_path,
)
def run_command(cfg: RunConfig) -> None:
    """Run the whole job: check, caption, fine-tune, caption, evaluate, study, analyse, memo.

    No CONFIG = the embedded demo (configs/demo.yaml). Rerunning resumes in RUN_DIR: finished
    stages whose settings and inputs did not change are skipped.
    """
    from altcap.config import ConfigError
    from altcap.pipeline.run import run_pipeline

    try:
        memo = run_pipeline(cfg)
    except ConfigError as err:
        raise fail(str(err)) from err
    typer.echo(f"memo: {memo}")
    typer.echo(f"summary: {cfg.run_dir / 'summary.md'}")
