"""Typer commands generated from the typed stage configs: one source of truth for flags.

`config_command(Config, flags=[...], example=...)` turns `run(cfg, ...)` into a Typer command whose
options are built from the config's pydantic fields (name, type, default and help from the field's
description), plus `--config FILE` and `--set key.sub=value`. Precedence: default < YAML < flags <
--set (see `altcap.config.load_config`). Typer stays the app framework; pydantic-settings' CLI and
pydanclick build argparse/click apps of their own and know nothing of our YAML layer and `--set`.
"""

from __future__ import annotations

import functools
import inspect
import shutil
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from altcap.config import ConfigError, example_set_option, load_config

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

_SCALARS = (bool, int, float, str, Path)


@dataclass(frozen=True)
class Flag:
    """One generated CLI parameter: the config field it sets and how it is spelled.

    Attributes:
        field: dotted config field, e.g. "optim.lr".
        name: flag name without dashes; default = the field's last part (`lr`).
        short: optional one-letter alias, e.g. "-o".
        argument: a positional argument instead of an option.
    """

    field: str
    name: str | None = None
    short: str | None = None
    argument: bool = False

    @property
    def param(self) -> str:
        """The Python parameter name (also what `--help` spells, with dashes)."""
        return (self.name or self.field.rsplit(".", 1)[-1]).replace("-", "_")


ForceOption = Annotated[
    bool, typer.Option("--force", help="Replace an earlier result in the output folder (only its files).")
]


@dataclass(frozen=True)
class ConfigInput:
    """What the user gave a command: the YAML path, the flags (field -> value, None = not given), --set."""

    path: Path | None
    flags: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a user-facing error (no traceback) and return the Exit to raise."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


def resolve_config(
    cls: type[T], path: Path | None, flags: dict[str, Any], sets: list[str] | None, section: Any = None
) -> T:
    """Load a stage config for a CLI command; config problems exit 2 with every problem listed."""
    try:
        return load_config(cls, path, flags, sets or [], section=section)
    except ConfigError as err:
        raise fail(str(err)) from err


def _field_info(cls: type[BaseModel], dotted: str) -> tuple[Any, str, Any]:
    """(annotation, description, default) of a dotted field; the default as `cls()` would have it."""
    node: Any = cls.model_construct()
    owner: type[BaseModel] = cls
    *parents, leaf = dotted.split(".")
    for part in parents:
        owner = owner.model_fields[part].annotation
        node = getattr(node, part)
    info = owner.model_fields[leaf]
    return info.annotation, info.description or "", getattr(node, leaf)


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _cli_type(annotation: Any, dotted: str) -> Any:
    """The Typer type of a field; a field Typer cannot spell is a programming error (use --set)."""
    inner = _strip_optional(annotation)
    origin = typing.get_origin(inner)
    if origin is list and typing.get_args(inner)[0] in _SCALARS:
        return inner
    if origin is Literal or inner in _SCALARS:
        return inner
    raise TypeError(f"{dotted}: type {annotation!r} has no CLI flag; reach it with --set {dotted}=...")


def _cli_default(default: Any) -> Any:
    """The default Typer shows in --help; empty lists show nothing."""
    return None if isinstance(default, list | tuple) and not default else default


def build_parameter(cls: type[BaseModel], flag: Flag) -> inspect.Parameter:
    """The Typer parameter of one config field (its help is the field's description).

    Its default is the field's, for --help only: a flag the user did not type counts as not given
    (`_given_values`), so YAML and --set still apply.

    Args:
        cls: the stage config class.
        flag: which field and how it is spelled.

    Returns:
        A keyword parameter.
    """
    annotation, description, default = _field_info(cls, flag.field)
    cli_type = _cli_type(annotation, flag.field)
    where = "" if flag.param == flag.field else f" ({flag.field})"
    help_text = escape(f"{description}{where}")
    if flag.argument:
        marker: Any = typer.Argument(
            help=help_text, show_default=default is not None, metavar=flag.param.upper()
        )
    else:
        name = flag.param.replace("_", "-")
        spelled = f"--{name}/--no-{name}" if cli_type is bool else f"--{name}"
        names = [spelled, flag.short] if flag.short else [spelled]
        marker = typer.Option(*names, help=help_text, show_default=default is not None)
    return inspect.Parameter(
        flag.param,
        inspect.Parameter.KEYWORD_ONLY,
        default=_cli_default(default),
        annotation=Annotated[cli_type | None, marker],
    )


def _given_values(given: dict[str, Any], specs: Sequence[Flag], context: typer.Context) -> dict[str, Any]:
    """field -> value of the flags the user typed; the rest are None (= not given)."""
    values = {}
    for spec in specs:
        value = given.pop(spec.param)
        source = context.get_parameter_source(spec.param)
        typed = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
        values[spec.field] = value if typed and value != [] else None
    return values


def _set_parameter(cls: type[BaseModel]) -> inspect.Parameter:
    example = example_set_option(cls)
    marker = typer.Option("--set", help=f"Override any config field (repeatable), e.g. --set {example}.")
    return inspect.Parameter(
        "set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[list[str] | None, marker]
    )


def _config_parameters(positional: bool) -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("config", keyword, default=None, annotation=ConfigPath)]
    if positional:
        marker = typer.Argument(
            help="YAML config file (same as --config).", show_default=False, metavar="CONFIG"
        )
        params.insert(
            0,
            inspect.Parameter(
                "config_file", keyword, default=None, annotation=Annotated[Path | None, marker]
            ),
        )
    return params


def _pick_config_path(given: dict[str, Any]) -> Path | None:
    positional, option = given.pop("config_file", None), given.pop("config")
    if positional is not None and option is not None and positional != option:
        raise fail(f"two config files given ({positional} and --config {option}); give one")
    return positional if positional is not None else option


def build_signature(
    cls: type[BaseModel], specs: Sequence[Flag], run: Callable[..., None], config_argument: bool
) -> list[inspect.Parameter]:
    """The generated command's parameters: [CONFIG], arguments, run's extras, flags, --config, --set.

    Args:
        cls: the stage config class.
        specs: the fields that get a flag.
        run: the decorated function; its parameters after the config (except `given`) are kept.
        config_argument: lead with a positional CONFIG.

    Returns:
        Keyword parameters in the order `--help` lists them, plus the hidden Typer context.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    hints = typing.get_type_hints(run, include_extras=True)  # run's module may defer annotations
    own = list(inspect.signature(run).parameters.values())[1:]
    extras = [p.replace(kind=keyword, annotation=hints[p.name]) for p in own if p.name != "given"]
    generated = [(build_parameter(cls, spec), spec.argument) for spec in specs]
    arguments = [p for p, is_argument in generated if is_argument]
    options = [p for p, is_argument in generated if not is_argument]
    config_params = _config_parameters(config_argument)
    params = config_params[:1] if config_argument else []
    params += arguments + extras + options + config_params[1 if config_argument else 0 :]
    return [
        *params,
        _set_parameter(cls),
        inspect.Parameter("altcap_context", keyword, annotation=typer.Context),
    ]


def config_command(
    cls: type[BaseModel],
    flags: Sequence[str | Flag],
    example: str,
    config_argument: bool = False,
    section: Any = None,
    default_config: Callable[[], Path] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Turn `run(cfg, [given], **extras)` into a Typer command with one flag per listed config field.

    Args:
        cls: the stage config class.
        flags: dotted fields (or `Flag`s) that get their own flag; every field is reachable by --set.
        example: one runnable command line, shown at the end of `--help`.
        config_argument: also accept the YAML file as the first positional argument.
        section: how to read this stage's settings out of an `altcap run` YAML (`config.PipelineSection`).
        default_config: the YAML used when none is given (`altcap run`'s embedded demo).

    Returns:
        A decorator; `run`'s own extra parameters (Typer-annotated) stay parameters of the command,
        and a parameter named `given` receives the `ConfigInput`.
    """
    specs = [f if isinstance(f, Flag) else Flag(f) for f in flags]

    def decorate(run: Callable[..., None]) -> Callable[..., None]:
        params = build_signature(cls, specs, run, config_argument)
        wants_given = "given" in inspect.signature(run).parameters

        @functools.wraps(run)
        def command(**given: Any) -> None:
            path = _pick_config_path(given)
            if path is None and default_config is not None:
                path = default_config()
            sets = given.pop("set_") or []
            values = _given_values(given, specs, given.pop("altcap_context"))
            cfg = resolve_config(cls, path, values, sets, section)
            if wants_given:
                given["given"] = ConfigInput(path, values, list(sets))
            run(cfg, **given)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # Typer must read the generated signature, not run's
        command.altcap_example = example  # type: ignore[attr-defined]
        command.altcap_fields = {s.param: s.field for s in specs}  # type: ignore[attr-defined]
        command.altcap_config = cls  # type: ignore[attr-defined]
        return command

    return decorate


def attach_examples(app: typer.Typer) -> None:
    """Show each generated command's example at the end of its `--help` (Typer's epilog)."""
    for info in app.registered_commands:
        example = getattr(info.callback, "altcap_example", None)
        if example and not info.epilog:
            info.epilog = f"Example: {example}"
    for group in app.registered_groups:
        if group.typer_instance is not None:
            attach_examples(group.typer_instance)


def refuse_to_overwrite(folder: Path | None, outputs: Sequence[str], force: bool) -> None:
    """Refuse to replace an earlier result in `folder` unless --force; with --force remove just it.

    The one place commands that write a fresh result (check, evaluate, analyze, memo, export)
    decide about a folder that already holds one; commands that resume (run, train, caption)
    continue in their own folder instead and never call this.

    Args:
        folder: the command's output folder (None = not chosen yet; the stage will say so).
        outputs: glob patterns of the files this command writes there, e.g. ["metrics.*"].
        force: the user passed --force: remove those files (nothing else) and go on.

    Raises:
        typer.Exit: code 2 when an earlier result is there and `force` is off.
    """
    if folder is None or not folder.is_dir():
        return
    found = sorted({p for pattern in outputs for p in folder.glob(pattern)})
    if not found:
        return
    if not force:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise fail(
            f"{folder}: holds an earlier result ({names}); pass --force to replace it, or choose "
            "another output folder (nothing was changed)"
        )
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
