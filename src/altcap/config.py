"""Typed stage configs loaded from YAML, with `--set key=value` overrides.

Precedence: field default < YAML file < CLI flags < `--set`. Every problem found while loading is
collected and raised once as a `ConfigError` naming the file (or flag), the dotted field, the value
and what would fix it.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class StageConfig(BaseModel):
    """Base for every stage's config: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ConfigError(ValueError):
    """One or more config problems, each on its own line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config:\n  - " + "\n  - ".join(problems))


def field_paths(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """All dotted leaf field names of a config class (nested models expanded)."""
    paths: list[str] = []
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(field_paths(annotation, f"{prefix}{name}."))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def example_set_option(cls: type[BaseModel]) -> str:
    """A valid `--set` value for this config, e.g. "optim.lr=3e-05" (a nested field when there is one).

    Args:
        cls: a stage config class.

    Returns:
        `dotted.key=value` with the field's default, spelled as `--set` parses it back.
    """

    def default_of(dotted: str) -> Any:
        node: Any = cls.model_construct()
        for part in dotted.split("."):
            node = getattr(node, part)
        return node

    # Prefer a nested field with a plain default: it shows the dotted form and parses back as is.
    paths = field_paths(cls)
    dotted = min(paths, key=lambda p: ("." not in p, default_of(p) in (None, [], {})))
    node = default_of(dotted)
    value = node.model_dump(mode="json") if isinstance(node, BaseModel) else node
    text = yaml.safe_dump(str(value) if isinstance(value, Path) else value, default_flow_style=True)
    return f"{dotted}={text.strip().removesuffix('...').strip()}"


def parse_set_options(options: Iterable[str], example: str = "key.sub=value") -> dict[str, Any]:
    """Turn `key.sub=value` strings into a dotted-key dict; values are parsed as YAML scalars/lists."""
    parsed: dict[str, Any] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {option!r}: expected KEY=VALUE, e.g. --set {example}"])
        parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return parsed


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file."""
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"]) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping of config keys, got {type(data).__name__}"])
    return data


@dataclass(frozen=True)
class PipelineSection:
    """How a stage command reads its settings out of an `altcap run` YAML (such as configs/demo.yaml).

    The stage's section (e.g. `train:`) is the config; `lifts` copy pipeline-wide keys into it the way
    `altcap run` does (e.g. top-level `model` -> `model`, `manifest` -> `data.manifest`), and
    `when_null` gives the value `altcap run` would use for a lifted key that is absent or null.
    """

    name: str
    lifts: dict[str, str] = dataclass_field(default_factory=dict)
    when_null: dict[str, Callable[[], Any]] = dataclass_field(default_factory=dict)

    def is_pipeline_file(self, cls: type[BaseModel], data: Mapping[str, Any]) -> bool:
        """True when `data` is a pipeline YAML rather than this stage's own config."""
        return any(k in data and k not in cls.model_fields for k in (self.name, "run_dir"))

    def extract(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """This stage's config mapping, as `altcap run` would build it from the pipeline YAML."""
        stage = copy.deepcopy(data.get(self.name) or {})
        for source, target in self.lifts.items():
            value: Any = data
            for part in source.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is None and source in self.when_null:
                value = self.when_null[source]()
            if value is not None:
                _set_dotted(stage, target, str(value) if isinstance(value, Path) else value)
        return stage


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def _unknown_keys(cls: type[BaseModel], data: Mapping[str, Any], prefix: str = "") -> list[str]:
    unknown: list[str] = []
    for key, value in data.items():
        field = cls.model_fields.get(key)
        if field is None:
            unknown.append(f"{prefix}{key}")
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, Mapping):
            unknown.extend(_unknown_keys(annotation, value, f"{prefix}{key}."))
    return unknown


def _describe_unknown(key: str, source: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{source}: unknown key {key!r}; {hint}valid keys: {', '.join(valid)}"


def load_config(
    cls: type[T],
    path: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    section: PipelineSection | None = None,
) -> T:
    """Build a stage config from defaults, a YAML file, CLI flags and `--set` options.

    Args:
        cls: the stage's config class.
        path: optional YAML file; its keys are the config's fields (nested as mappings).
        flags: dotted-key values from Typer flags; `None` values mean "not given" and are skipped.
        sets: raw `KEY=VALUE` strings from `--set`.
        section: when given and `path` is an `altcap run` YAML, read this stage's section from it.

    Returns:
        The validated config.

    Raises:
        ConfigError: listing every unknown key and invalid value, each with its source.
    """
    data: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    if section is not None and section.is_pipeline_file(cls, data):
        data = section.extract(data)
    source_of: dict[str, str] = {}
    valid = field_paths(cls)
    problems = [_describe_unknown(k, str(path), valid) for k in _unknown_keys(cls, data)]
    # A flag left at None was not given; `--set key=null` is an explicit None and is kept.
    overrides = [
        (k, v, f"--{k.replace('.', '-').replace('_', '-')}")
        for k, v in (flags or {}).items()
        if v is not None
    ]
    overrides += [(k, v, f"--set {k}") for k, v in parse_set_options(sets, example_set_option(cls)).items()]
    for key, value, source in overrides:
        if key not in valid and not any(p.startswith(key + ".") for p in valid):
            problems.append(_describe_unknown(key, source, valid))
            continue
        _set_dotted(data, key, value)
        source_of[key] = source
    if problems:
        raise ConfigError(problems)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError([_describe_validation_error(e, path, source_of) for e in err.errors()]) from err


def _describe_validation_error(error: Mapping[str, Any], path: Path | None, source_of: dict[str, str]) -> str:
    dotted = ".".join(str(p) for p in error["loc"])
    source = source_of.get(dotted) or (str(path) if path else "defaults")
    return f"{source}: {dotted}={error.get('input')!r}: {error['msg']}"


def dump_config(config: BaseModel, path: Path) -> None:
    """Write the resolved config as YAML (the provenance copy beside every artifact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
