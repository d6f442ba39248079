"""Simulation-based power: planted effects are found, null effects rarely are (issue #7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from altcap.analysis.commands import register
from altcap.analysis.power import PowerConfig, run_power


def test_planted_effect_is_recovered_in_most_seeds() -> None:
    result = run_power(PowerConfig(n_participants=30, effect=1.0, sims=20, seed=100), show_progress=False)
    assert result["power"]["share"] >= 0.8, result["p_values"]


@pytest.mark.slow
def test_false_positive_rate_with_no_effect_stays_near_alpha() -> None:
    result = run_power(PowerConfig(n_participants=30, effect=0.0, sims=40, seed=200), show_progress=False)
    assert result["power"]["share"] <= 0.125, result["p_values"]
    assert len(result["p_values"]) == 40


@pytest.mark.slow
def test_power_grows_with_sample_size() -> None:
    small = run_power(PowerConfig(n_participants=8, effect=0.5, sims=20, seed=300), show_progress=False)
    large = run_power(PowerConfig(n_participants=40, effect=0.5, sims=20, seed=300), show_progress=False)
    assert large["power"]["share"] > small["power"]["share"]


@pytest.mark.slow
def test_power_command_writes_json(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    out = tmp_path / "power.json"
    result = CliRunner().invoke(
        app, ["power", "--n", "12", "--effect", "1.0", "--sims", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "power" in result.output
    saved = json.loads(out.read_text())
    assert saved["config"]["n_participants"] == 12 and saved["power"]["n"] == 5
    assert "provenance" in saved
