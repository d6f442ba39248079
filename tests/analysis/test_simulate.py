"""`altcap study simulate`: export-format files, SIMULATED marking, the documented model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from altcap.analysis.commands import register, run_simulate
from altcap.analysis.simulate import (
    SimulationConfig,
    draw_ratings,
    simulate_study,
)
from altcap.study.columns import PARTICIPANT_COLUMNS, RESPONSE_COLUMNS
from altcap.study.scoring import AnswerKey, score_answer


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SimulationConfig(
        n_participants=12,
        n_images=8,
        seed=3,
        withdraw_rate=0.2,
        incomplete_rate=0.1,
        out=tmp_path_factory.mktemp("sim") / "study",
    )
    return run_simulate(cfg)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_writes_export_files_with_schema_columns(sim_dir: Path) -> None:
    assert sorted(p.name for p in sim_dir.iterdir()) == [
        "SIMULATED.txt",
        "metrics",
        "participants.csv",
        "responses.csv",
        "responses.json",
        "study.json",
    ]
    rows = read_csv(sim_dir / "responses.csv")
    assert list(rows[0]) == RESPONSE_COLUMNS
    assert list(read_csv(sim_dir / "participants.csv")[0]) == PARTICIPANT_COLUMNS
    assert len(json.loads((sim_dir / "responses.json").read_text())) == len(rows)
    assert {r["trial_kind"] for r in rows} == {"practice", "rating", "attention", "task"}
    assert {r["item"] for r in rows} >= {
        "usefulness",
        "preference",
        "attention",
        "task_answer",
        "task_confidence",
    }


def test_every_output_is_marked_simulated(sim_dir: Path) -> None:
    study = json.loads((sim_dir / "study.json").read_text())
    assert study["simulated"] is True and len(study["design_sha256"]) == 64
    assert "SIMULATED" in (sim_dir / "SIMULATED.txt").read_text()
    assert json.loads((sim_dir / "metrics" / "metrics.json").read_text())["simulated"] is True


def test_statuses_and_counterbalancing(sim_dir: Path) -> None:
    rows = read_csv(sim_dir / "responses.csv")
    statuses = {r["participant_id"]: r["participant_status"] for r in rows}
    assert "withdrawn" in statuses.values() and "completed" in statuses.values()
    ratings = [r for r in rows if r["item"] == "usefulness" and r["trial_kind"] == "rating"]
    positions = [r["position"] for r in ratings if r["system"] == "finetuned"]
    assert abs(positions.count("1") - positions.count("2")) <= len(positions) * 0.2
    assert {int(r["value"]) for r in ratings} <= set(range(1, 8))


def test_task_correctness_matches_the_scorer(sim_dir: Path) -> None:
    rows = [r for r in read_csv(sim_dir / "responses.csv") if r["item"] == "task_answer"]
    keys = {}
    for r in rows:  # in the simulation a correct answer is always the key or its number word
        if r["correct"] == "true":
            keys.setdefault(r["question_id"], r["value"])
    assert any(not r["value"].isdigit() and r["correct"] == "true" for r in rows)  # "Three." style answers
    for r in rows:
        if r["question_id"] in keys:
            key = AnswerKey(kind="number", answer=keys[r["question_id"]])
            assert score_answer(r["value"], key) == (r["correct"] == "true")


def test_same_seed_same_study_and_refuses_non_empty_out(tmp_path: Path) -> None:
    a, _, _ = simulate_study(SimulationConfig(n_participants=4, n_images=4, seed=9))
    b, _, _ = simulate_study(SimulationConfig(n_participants=4, n_images=4, seed=9))
    c, _, _ = simulate_study(SimulationConfig(n_participants=4, n_images=4, seed=10))
    assert a == b and a != c
    (tmp_path / "keep.txt").write_text("user file")
    with pytest.raises(FileExistsError, match="not empty"):
        run_simulate(SimulationConfig(out=tmp_path))
    assert (tmp_path / "keep.txt").read_text() == "user file"


def test_cumulative_logit_ratings_shift_with_latent_mean() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    low, _ = draw_ratings(rng, np.full(4000, -1.0), 7)
    high, _ = draw_ratings(rng, np.full(4000, 1.0), 7)
    assert low.min() >= 1 and high.max() <= 7
    assert high.mean() - low.mean() > 0.8


def test_simulate_command(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["simulate", "--n", "5", "--effect", "0.5", "--seed", "0", "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "SIMULATED.txt").is_file()
    bad = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "s")])
    assert bad.exit_code == 2 and "nothing was overwritten" in " ".join(bad.output.split())
