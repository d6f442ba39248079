"""`altcap run`: the one-command pipeline (torch is imported only once a stage runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from altcap.cli_options import SetOptions, resolve_config


def default_config_path() -> Path:
    """The embedded default: configs/demo.yaml inside the package."""
    return Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def run_command(
    config: Annotated[
        Path | None, typer.Argument(help="Pipeline YAML; default: the embedded demo (configs/demo.yaml).")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Folder every stage writes into.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Dataset manifest; default: embedded sample.")] = None,
    model_id: Annotated[str | None, typer.Option(help="Base model hub id or folder.")] = None,
    sets: SetOptions = None,
) -> None:
    """Run the whole job: check, caption, fine-tune, caption, evaluate, study, analyse, memo."""
    from altcap.pipeline.run import RunConfig, run_pipeline

    path = config or default_config_path()
    flags = {"run_dir": run_dir, "manifest": manifest, "model.model_id": model_id}
    cfg = resolve_config(RunConfig, path, flags, sets)
    memo = run_pipeline(cfg)
    typer.echo(f"memo: {memo}")
    typer.echo(f"summary: {cfg.run_dir / 'summary.md'}")
