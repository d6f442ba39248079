"""Every command's flags come from its config (one source of truth), and its --help shows an example."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from altcap.cli import app
from altcap.cli_options import Flag, config_command
from altcap.config import ConfigError, StageConfig, example_set_option, field_paths, load_config

# Generated parameters that are not config fields.
NOT_FLAGS = {"config", "config_file", "set_", "altcap_context"}

runner = CliRunner()

# Commands that keep hand-written options, and why (anything else must be generated).
HAND_WRITTEN = {
    "version": "no options",
    "models": "one --json switch and no config: it lists the registry",
    "data formats": "no options",
    "study init": "--config is the study design; its site options are built from StudySiteConfig fields",
    "study questions": "a template path, not a config field",
    "study power": "PowerConfig's module imports pandas/scipy, too slow for `altcap --help`",
    "demo-ui": "owned by infer/demo_ui.py; its FLAG_FIELDS are checked in tests/infer/test_demo_ui.py",
}


def walk_commands(typer_app: typer.Typer, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for info in typer_app.registered_commands:
        yield f"{prefix}{info.name or info.callback.__name__.replace('_', '-')}", info
    for group in typer_app.registered_groups:
        yield from walk_commands(group.typer_instance, f"{prefix}{group.name} ")


COMMANDS = dict(walk_commands(app))


def test_every_command_is_generated_or_listed_as_hand_written() -> None:
    generated = {name for name, info in COMMANDS.items() if hasattr(info.callback, "altcap_config")}
    assert {"train", "caption", "evaluate", "run", "memo", "data check", "study analyze"} <= generated
    assert set(COMMANDS) - generated == set(HAND_WRITTEN)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_defaults_and_ends_with_a_runnable_example(name: str) -> None:
    result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith(f"Example: altcap {name}"), lines[-1]
    callback = COMMANDS[name].callback
    if hasattr(callback, "altcap_config") and any(
        p.default is not None for p in inspect.signature(callback).parameters.values()
    ):
        assert "[default: " in result.output


@pytest.mark.parametrize(
    "name", sorted(n for n, i in COMMANDS.items() if hasattr(i.callback, "altcap_config"))
)
def test_generated_flags_map_to_fields_and_set_hint_is_valid(name: str) -> None:
    callback = COMMANDS[name].callback
    cls = callback.altcap_config
    assert set(callback.altcap_fields.values()) <= set(field_paths(cls))
    params = set(inspect.signature(callback).parameters) - NOT_FLAGS
    extras = params - set(callback.altcap_fields)
    assert extras <= {"n", "csv_path", "valid_days", "role", "out", "force"}, extras  # actions, not settings
    example = example_set_option(cls)
    try:
        load_config(cls, None, {}, [example])
    except ConfigError as err:  # a model validator may need other fields; the example itself must not fail
        assert example.split("=")[0] not in str(err), str(err)


def test_power_flags_map_to_fields() -> None:
    from altcap.analysis.commands import POWER_FLAGS, power_command
    from altcap.analysis.power import PowerConfig

    params = set(inspect.signature(power_command).parameters) - {"config", "set_"}
    assert params == set(POWER_FLAGS)
    assert set(POWER_FLAGS.values()) <= set(field_paths(PowerConfig))


class Inner(StageConfig):
    lr: float = Field(default=0.1, gt=0, description="Step size [per step].")


class Outer(StageConfig):
    name: str = Field(default="x", description="A name.")
    fast: bool = Field(default=False, description="Go fast.")
    inner: Inner = Field(default_factory=Inner, description="Inner.")
    items: list[str] = Field(default_factory=list, description="Some items.")


def _outer_app(seen: list[Outer]) -> typer.Typer:
    sub = typer.Typer()

    @sub.command("go")
    @config_command(Outer, ["name", "fast", "inner.lr", Flag("items", name="item")], example="x go")
    def go(cfg: Outer) -> None:
        """Go."""
        seen.append(cfg)

    sub.command("other")(lambda: None)
    return sub


def test_generated_command_keeps_precedence_default_yaml_flag_set(tmp_path: Path) -> None:
    seen: list[Outer] = []
    sub = _outer_app(seen)
    (tmp_path / "c.yaml").write_text("name: yaml\nfast: true\ninner:\n  lr: 0.5\n")
    # A flag left at its shown default is "not given": YAML keeps its value.
    result = runner.invoke(
        sub, ["go", "-c", str(tmp_path / "c.yaml"), "--lr", "0.7", "--set", "inner.lr=0.9"]
    )
    assert result.exit_code == 0, result.output
    assert (seen[-1].name, seen[-1].fast, seen[-1].inner.lr) == ("yaml", True, 0.9)
    result = runner.invoke(
        sub, ["go", "-c", str(tmp_path / "c.yaml"), "--no-fast", "--item", "a", "--item", "b"]
    )
    assert result.exit_code == 0, result.output
    assert (seen[-1].fast, seen[-1].items, seen[-1].inner.lr) == (False, ["a", "b"], 0.5)
    help_text = runner.invoke(sub, ["go", "--help"], env={"COLUMNS": "200"}).output
    assert "Step size [per step]. (inner.lr)" in help_text and "[default: 0.1]" in help_text
    assert "--set inner.lr=0.1" in help_text


def test_bad_set_gets_a_valid_example() -> None:
    result = runner.invoke(app, ["train", "--set", "lr"])
    assert result.exit_code == 2
    example = example_set_option(COMMANDS["train"].callback.altcap_config)
    assert f"e.g. --set {example}" in result.output


@pytest.mark.parametrize(
    ("args", "marker"),
    [
        (["evaluate", "--refs", "r.jsonl", "--pred", "p.jsonl", "--out", "{out}"], "metrics.json"),
        (["memo", "--analysis", "a.json", "--out", "{out}"], "memo.md"),
        (["study", "analyze", "export", "--out", "{out}"], "analysis.json"),
        (["study", "export", "--run-dir", "nowhere", "--out", "{out}"], "responses.csv"),
        (["data", "check", "--out", "{out}"], "check_report.json"),
    ],
)
def test_commands_refuse_to_replace_an_earlier_result_without_force(
    args: list[str], marker: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / marker).write_text("earlier result\n")
    result = runner.invoke(app, [a.format(out=out) for a in args])
    assert result.exit_code == 2, result.output
    assert "pass --force" in result.output and marker in result.output
    assert (out / marker).read_text() == "earlier result\n"
