from pathlib import Path

import pytest
from pydantic import Field

from altcap.config import ConfigError, StageConfig, field_paths, load_config


class Optim(StageConfig):
    lr: float = Field(default=3e-5, gt=0, description="learning rate")
    warmup_steps: int = Field(default=10, ge=0, description="warm-up")


class Demo(StageConfig):
    name: str = Field(default="x", description="a name")
    optim: Optim = Field(default_factory=Optim, description="optimiser")


def test_precedence_default_yaml_flag_set(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: from-yaml\noptim:\n  lr: 0.1\n  warmup_steps: 3\n")
    cfg = load_config(Demo, path, {"optim.lr": 0.2, "name": None}, ["optim.warmup_steps=7"])
    assert cfg.name == "from-yaml"
    assert cfg.optim.lr == 0.2
    assert cfg.optim.warmup_steps == 7
    assert load_config(Demo).optim.lr == 3e-5


def test_every_problem_reported_once_with_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("nmae: oops\noptim:\n  lr: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Demo, path, sets=["optim.warmup=2"])
    text = str(err.value)
    assert f"{path}: unknown key 'nmae'; did you mean name?" in text
    assert "--set optim.warmup: unknown key" in text
    assert "valid keys: name, optim.lr, optim.warmup_steps" in text


def test_invalid_value_names_field_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(Demo, None, sets=["optim.lr=-3"])
    assert "--set optim.lr: optim.lr=-3: Input should be greater than 0" in str(err.value)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Demo, tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Demo, tmp_path / "list.yaml")


def test_field_paths_expand_nested() -> None:
    assert field_paths(Demo) == ["name", "optim.lr", "optim.warmup_steps"]


def test_set_null_overrides_yaml_value(tmp_path: Path) -> None:
    class Nullable(StageConfig):
        limit: int | None = Field(default=5, description="a limit")

    path = tmp_path / "c.yaml"
    path.write_text("limit: 3\n")
    assert load_config(Nullable, path, {"limit": None}).limit == 3
    assert load_config(Nullable, path, sets=["limit=null"]).limit is None
