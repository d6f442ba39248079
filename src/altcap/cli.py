"""The `altcap` command. Thin: each stage module owns its Typer commands and its `run_<stage>`.

Stage command modules must not import torch or transformers at import time, so `altcap --help`
and `altcap study serve` start in about a second.
"""

from __future__ import annotations

import typer

from altcap import __version__
from altcap.data.commands import app as data_app

app = typer.Typer(
    help="altcap: fine-tune image captioners for blind and low-vision users, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.add_typer(data_app, name="data", help="Import, check and split captioning datasets.")


@app.command()
def version() -> None:
    """Print altcap's version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
