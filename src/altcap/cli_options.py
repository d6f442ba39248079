"""Typer options shared by every stage command, so `--set` and CONFIG behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from altcap.config import ConfigError, load_config

T = TypeVar("T", bound=BaseModel)

ConfigPath = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file; flags and --set override it."),
]
SetOptions = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config field: --set key.sub=value (repeatable)."),
]

error_console = Console(stderr=True)


def resolve_config(cls: type[T], path: Path | None, flags: dict[str, Any], sets: list[str] | None) -> T:
    """Load a stage config for a CLI command; config problems exit 2 with every problem listed."""
    try:
        return load_config(cls, path, flags, sets or [])
    except ConfigError as err:
        error_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from err


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a user-facing error (no traceback) and return the Exit to raise."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=code)
