"""`altcap study analyze` (run_analyze): the files it writes, planted-effect recovery, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from altcap.analysis.commands import AnalysisConfig, register, run_analyze, run_simulate
from altcap.analysis.simulate import SimulationConfig


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("analysis")
    run_simulate(SimulationConfig(n_participants=30, effect=1.0, seed=1, out=root / "sim"))
    cfg = AnalysisConfig(
        export_dir=root / "sim",
        metrics=root / "sim" / "metrics" / "metrics.json",
        out=root / "out",
        n_boot=300,
    )
    path = run_analyze(cfg)
    return root / "out", json.loads(path.read_text())


def test_analysis_outputs_and_simulated_stamp(analyzed: tuple[Path, dict]) -> None:
    out, result = analyzed
    assert sorted(p.name for p in out.iterdir()) == [
        "analysis.json",
        "analysis.md",
        "likert.png",
        "likert.svg",
        "metric_validity.png",
        "metric_validity.svg",
    ]
    assert result["simulated"] is True
    md = (out / "analysis.md").read_text()
    assert md.startswith("> **SIMULATED DATA**") and md.rstrip().endswith("no person took part.")
    assert "SIMULATED DATA" in (out / "likert.svg").read_text()
    assert result["n_included"] + result["n_excluded"] == result["n_participants"] == 30
    assert "random-effects" in result["ordinal_model"]["note"]
    assert result["decision"]["verdict"] in {"GO", "NO-GO", "INCONCLUSIVE"}


def test_planted_effect_is_recovered(analyzed: tuple[Path, dict]) -> None:
    _, result = analyzed
    primary, model = result["primary"], result["ordinal_model"]["coefficients"]
    assert primary["p_value"] < 0.05 and primary["median_gain"] > 0
    assert primary["hodges_lehmann_ci_low"] > 0 and primary["rank_biserial"] > 0.3
    assert model["finetuned"]["ci_low"] > 0
    assert 0.4 < model["finetuned"]["log_odds"] < 1.6  # true effect 1.0 (attenuated by random slopes)
    assert model["position_2"]["ci_low"] < 0 < model["position_2"]["ci_high"]  # no planted position effect
    shares = result["preferences"]["shares"]
    assert shares["finetuned"]["share"] > shares["base"]["share"]


def test_refuses_non_empty_out(analyzed: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = analyzed
    with pytest.raises(FileExistsError):
        run_analyze(AnalysisConfig(export_dir=out.parent / "sim", out=out))


def test_analyze_command_reports_missing_export(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "responses.csv" in result.output and "altcap study export" in " ".join(result.output.split())
