"""The `altcap` command. Thin: each stage module owns its Typer commands and its `run_<stage>`.

Stage command modules must not import torch or transformers at import time, so `altcap --help`
and `altcap study serve` start in about a second. `altcap COMMAND ...` (the `main` entry point)
imports only COMMAND's module: every other stage's commands, configs and libraries (numpy,
the analysis and pipeline code) would cost each start ~0.2-0.3 s on 2 cores for nothing.
`app`, the whole command tree, is built on first use (`from altcap.cli import app`).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any, NamedTuple

import typer

from altcap import __version__
from altcap.cli_options import attach_examples
from altcap.cli_output import NORMAL, QUIET, VERBOSE, configure_output, read_inherited_verbosity
from altcap.launch import is_distributed_worker


class Command(NamedTuple):
    """Where a top-level command lives: `attribute` of `module` (a Typer app for a group)."""

    module: str
    attribute: str
    help: str | None = None  # a group's
    epilog: str | None = None  # a hand-written command's example


# Top-level commands, in `altcap --help` order; "study" also gets the analysis commands.
COMMANDS: dict[str, Command] = {
    "data": Command("altcap.data.commands", "app", help="Import, check and split captioning datasets."),
    "study": Command("altcap.study.commands", "app", help="Run the blinded, accessible user study."),
    "evaluate": Command("altcap.metrics.commands", "evaluate_command"),
    "train": Command("altcap.train.commands", "train_command"),
    "caption": Command("altcap.infer.commands", "caption_command"),
    "demo-ui": Command("altcap.infer.demo_ui", "demo_ui_command",
                       epilog="Example: altcap demo-ui --model-id altcap-mini"),
    "memo": Command("altcap.report.commands", "memo_command"),
    "run": Command("altcap.pipeline.commands", "run_command"),
    "models": Command("altcap.models.commands", "models_command", epilog="Example: altcap models --json"),
}
GROUPS = ("data", "study")
GLOBAL_FLAGS = ("--verbose", "-v", "--quiet", "-q")


def main_callback(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Info logs, every warning, library bars."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Errors only: no bars, notes or warnings."),
) -> None:
    """altcap: fine-tune image captioners for blind and low-vision users, and prove it.

    Quiet by default: each warning once, one progress bar (count, rate, ETA) per long stage.
    """
    # A worker started by `accelerate launch` gets no -q/-v of its own: it keeps its launcher's.
    default = read_inherited_verbosity() if is_distributed_worker() else NORMAL
    configure_output(VERBOSE if verbose else QUIET if quiet else default)


def version() -> None:
    """Print altcap's version."""
    typer.echo(__version__)


def build_app(names: tuple[str, ...] | None = None) -> typer.Typer:
    """The `altcap` Typer app with the commands in `names` (None = all), importing only their modules.

    Args:
        names: top-level command names (keys of COMMANDS, or "version").

    Returns:
        The app, every command's example attached to its help.
    """
    built = typer.Typer(
        help="altcap: fine-tune image captioners for blind and low-vision users, and prove it.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )
    built.callback()(main_callback)
    for name, command in COMMANDS.items():
        if names is not None and name not in names:
            continue
        target = getattr(importlib.import_module(command.module), command.attribute)
        if name in GROUPS:
            if name == "study":
                _add_analysis_commands(target)
            built.add_typer(target, name=name, help=command.help)
        else:
            built.command(name, epilog=command.epilog)(target)
    if names is None or "version" in names:
        built.command(epilog="Example: altcap version")(version)
    attach_examples(built)
    return built


def _add_analysis_commands(study_app: typer.Typer) -> None:
    from altcap.analysis.commands import register

    if not any(info.name == "analyze" for info in study_app.registered_commands):  # once a process
        register(study_app)


def named_command(argv: list[str]) -> str | None:
    """The top-level command `argv` (the arguments after `altcap`) runs, when it names a known one."""
    for arg in argv:
        if arg not in GLOBAL_FLAGS:
            return arg if arg in COMMANDS or arg == "version" else None
    return None


# Python's default gen-0 threshold is 700: importing torch and transformers (~400k long-lived objects)
# then set off 6 full collections during a warm `altcap caption` start (~0.6 s on 2 cores), each
# traversing every object and freeing almost nothing. At 50,000 none runs during start-up.
GC_THRESHOLDS = (50_000, 20, 20)
# OpenMP threads that spin while they wait hold on to cores other processes need: on the shared
# 2-core box a warm one-image caption on 2 threads took 33-45 s spinning and 3.8-4.7 s waiting
# passively (docs/benchmarks.md, start-up).
OMP_WAIT_POLICY = "PASSIVE"


def main() -> None:
    """The `altcap` console entry point: builds just the named command (all of them for `--help`,
    no command or an unknown one, so Typer lists them) and runs it."""
    # Read when torch loads OpenMP, so set before any command imports torch; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    gc.set_threshold(*GC_THRESHOLDS)
    name = named_command(sys.argv[1:])
    try:
        build_app((name,) if name else None)()
    finally:
        # The interpreter's last collection at exit would traverse them all once more (~1 s after
        # the last caption is written): there is nothing left that needs freeing.
        gc.freeze()


def __getattr__(attribute: str) -> Any:
    if attribute == "app":  # the whole tree, built once on first use (tests, `altcap.cli:app` scripts)
        globals()["app"] = build_app()
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


if __name__ == "__main__":
    main()
