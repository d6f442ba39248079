"""The objective table: one entry per `TrainConfig.objective`, and nobody else switches on the name."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

import altcap
from altcap.train.config import TrainConfig
from altcap.train.objectives import OBJECTIVES, check_objective_settings, get_objective


def test_config_names_exactly_the_registered_objectives() -> None:
    assert set(get_args(TrainConfig.model_fields["objective"].annotation)) == set(OBJECTIVES)
    assert all(name == objective.name for name, objective in OBJECTIVES.items())


def test_unknown_objective_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'xe' is not known; valid objectives: cross_entropy, scst"):
        get_objective("xe")
    with pytest.raises(ValidationError, match="'cross_entropy' or 'scst'"):
        TrainConfig(objective="xe")


def test_scst_refuses_compile_and_a_forced_cache_with_the_fix() -> None:
    problems = check_objective_settings(
        TrainConfig.model_validate({"objective": "scst", "compile": True, "feature_cache": {"enabled": True}})
    )
    assert len(problems) == 2
    assert "compile=true with objective=scst" in problems[0] and "set compile=false" in problems[0]
    assert "feature_cache.enabled=false" in problems[1]
    assert check_objective_settings(TrainConfig(compile=True, feature_cache={"enabled": True})) == []


def find_objective_switches(source: str) -> list[int]:
    """Lines that compare something's `.objective` (or an `objective` name) with a string."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        names = [o.attr if isinstance(o, ast.Attribute) else getattr(o, "id", None) for o in operands]
        strings = [o for o in operands if isinstance(o, ast.Constant) and isinstance(o.value, str)]
        if "objective" in names and strings:
            lines.append(node.lineno)
    return lines


def test_no_module_switches_on_the_objective_name() -> None:
    assert find_objective_switches('if cfg.objective == "scst":\n    pass\n') == [1]
    src = Path(altcap.__file__).parent
    found = {
        str(path.relative_to(src)): lines
        for path in sorted(src.rglob("*.py"))
        if (lines := find_objective_switches(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"switch on OBJECTIVES' entries (train/objectives.py) instead: {found}"
