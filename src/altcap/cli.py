"""The `altcap` command. Thin: each stage module owns its Typer commands and its `run_<stage>`.

Stage command modules must not import torch or transformers at import time, so `altcap --help`
and `altcap study serve` start in about a second.
"""

from __future__ import annotations

import typer

from altcap import __version__
from altcap.analysis.commands import register as register_study_analysis
from altcap.cli_options import attach_examples
from altcap.cli_output import NORMAL, QUIET, VERBOSE, configure_output, read_inherited_verbosity
from altcap.data.commands import app as data_app
from altcap.infer.commands import caption_command
from altcap.infer.demo_ui import demo_ui_command
from altcap.launch import is_distributed_worker
from altcap.metrics.commands import evaluate_command
from altcap.models.commands import models_command
from altcap.pipeline.commands import run_command
from altcap.report.commands import memo_command
from altcap.study.commands import app as study_app
from altcap.train.commands import train_command

app = typer.Typer(
    help="altcap: fine-tune image captioners for blind and low-vision users, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Info logs, every warning, library bars."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Errors only: no bars, notes or warnings."),
) -> None:
    """altcap: fine-tune image captioners for blind and low-vision users, and prove it.

    Quiet by default: each warning once, one progress bar (count, rate, ETA) per long stage.
    """
    # A worker started by `accelerate launch` gets no -q/-v of its own: it keeps its launcher's.
    default = read_inherited_verbosity() if is_distributed_worker() else NORMAL
    configure_output(VERBOSE if verbose else QUIET if quiet else default)


app.add_typer(data_app, name="data", help="Import, check and split captioning datasets.")
register_study_analysis(study_app)
app.add_typer(study_app, name="study", help="Run the blinded, accessible user study.")
app.command("evaluate")(evaluate_command)
app.command("train")(train_command)
app.command("caption")(caption_command)
app.command("demo-ui", epilog="Example: altcap demo-ui --model-id altcap-mini")(demo_ui_command)
app.command("memo")(memo_command)
app.command("run")(run_command)
app.command("models", epilog="Example: altcap models --json")(models_command)


@app.command(epilog="Example: altcap version")
def version() -> None:
    """Print altcap's version."""
    typer.echo(__version__)


attach_examples(app)


if __name__ == "__main__":
    app()
