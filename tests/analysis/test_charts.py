"""The analysis charts: error bars that hold their point, and a chart that fails never stops the run."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from altcap.analysis import charts, commands
from altcap.analysis.charts import build_error_bars
from altcap.analysis.commands import AnalysisConfig, analyze_export, run_analyze, run_simulate
from altcap.analysis.simulate import SimulationConfig
from altcap.report.commands import MemoConfig, run_memo


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnalysisConfig, dict[str, Any]]:
    """8 participants x 6 images, seed 4: a bootstrap CI of a Kendall tau there misses its own tau
    (it made the validity chart raise "'yerr' must not contain negative values"), and its numbers."""
    root = tmp_path_factory.mktemp("small_study")
    run_simulate(SimulationConfig(n_participants=8, n_images=6, seed=4, out=root / "sim"))
    metrics = root / "sim" / "metrics" / "metrics.json"
    cfg = AnalysisConfig(export_dir=root / "sim", metrics=metrics, n_boot=100)
    return cfg, analyze_export(cfg)


def analyze_small_study(small_study, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """run_analyze on the small study, its statistics reused (this file tests what it draws)."""
    cfg, result = small_study
    monkeypatch.setattr(commands, "analyze_export", lambda _: copy.deepcopy(result))
    return json.loads(run_analyze(cfg.model_copy(update={"out": out})).read_text())


def test_error_bars_span_an_interval_holding_the_point() -> None:
    assert build_error_bars(0.2, 0.25, 0.6) == (0.2, 0.0, pytest.approx(0.4))  # CI above the point
    assert build_error_bars(0.5, 0.1, 0.4) == (0.5, pytest.approx(0.4), 0.0)  # CI below the point
    assert build_error_bars(0.3, 0.1, 0.6) == (0.3, pytest.approx(0.2), pytest.approx(0.3))
    height, low, high = build_error_bars(None, -0.2, 0.4)
    assert height != height and (low, high) == (0.0, 0.0)  # NaN: no bar, no error bar


def test_validity_chart_of_a_study_whose_ci_misses_the_point(
    small_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = analyze_small_study(small_study, tmp_path / "out", monkeypatch)
    taus = [r for by_metric in result["metric_validity"]["outcomes"].values() for r in by_metric.values()]
    assert any(not r["ci_low"] <= r["tau"] <= r["ci_high"] for r in taus if r["tau"] is not None)
    assert "metric_validity.png" in result["charts"] and result["chart_problems"] == []
    assert (tmp_path / "out" / "metric_validity.svg").is_file()


def test_a_failing_chart_stops_neither_the_analysis_nor_the_memo(
    small_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_plot(*args, **kwargs):
        raise ValueError("'yerr' must not contain negative values")

    monkeypatch.setattr(charts, "plot_validity", broken_plot)
    with caplog.at_level(logging.WARNING, logger="altcap.analysis.charts"):
        result = analyze_small_study(small_study, tmp_path / "out", monkeypatch)
    assert result["charts"] == ["likert.png", "likert.svg"]
    assert result["chart_problems"] == [
        "metric_validity: ValueError: 'yerr' must not contain negative values"
    ]
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "metric_validity" in caplog.text
    assert not (tmp_path / "out" / "metric_validity.png").exists()
    md = (tmp_path / "out" / "analysis.md").read_text()
    assert "## Charts not drawn" in md and "metric_validity.png" not in md and "](likert.png)" in md
    memo = run_memo(MemoConfig(analysis=tmp_path / "out" / "analysis.json", out=tmp_path / "memo"))
    assert memo.is_file() and not (tmp_path / "memo" / "validity.png").exists()
