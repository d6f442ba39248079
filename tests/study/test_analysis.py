"""`altcap study analyze`: exclusions, planted-effect recovery, task accuracy, metric validity, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from altcap.report.validity import analyze_metric_validity, kendall_with_ci
from altcap.study import analysis
from altcap.study.analysis_commands import AnalysisConfig, register, run_analyze, run_simulate
from altcap.study.power import rows_to_frame
from altcap.study.scoring import NOT_STATED, AnswerKey, is_not_stated, score_answer
from altcap.study.simulate import SimulationConfig, simulate_study


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


def make_rows(
    pid: str, status: str = "completed", n_trials: int = 4, attention_ok: bool = True
) -> list[dict]:
    rows = []
    for t in range(n_trials):
        for system, value in (("base", "3"), ("finetuned", "5")):
            rows.append(
                {
                    "participant_id": pid,
                    "participant_status": status,
                    "trial_index": t,
                    "trial_kind": "rating",
                    "image": f"i{t}",
                    "system": system,
                    "position": "1",
                    "item": "usefulness",
                    "value": value,
                    "correct": "",
                }
            )
    rows.append(
        {
            "participant_id": pid,
            "participant_status": status,
            "trial_index": n_trials,
            "trial_kind": "attention",
            "image": "",
            "system": "",
            "position": "",
            "item": "attention",
            "value": "x",
            "correct": "true" if attention_ok else "false",
        }
    )
    return rows


def test_exclusion_rules_each_with_reason() -> None:
    rows = make_rows("ok") + make_rows("gone", status="withdrawn") + make_rows("asleep", attention_ok=False)
    rows += make_rows("quit", status="active", n_trials=2)
    responses = pd.DataFrame(rows)
    participants = pd.DataFrame(
        {
            "participant_id": ["ok", "gone", "asleep", "quit"],
            "status": ["completed", "withdrawn", "completed", "active"],
        }
    )
    excluded = {
        e["participant_id"]: e["reasons"] for e in analysis.find_exclusions(responses, participants, 0.8, 0)
    }
    assert set(excluded) == {"gone", "asleep", "quit"}
    assert excluded["gone"] == ["withdrawn"]
    assert "attention" in excluded["asleep"][0]
    assert excluded["quit"] == ["incomplete: 2 of 4 main trials (50%)"]
    lenient = analysis.find_exclusions(responses, participants, 0.5, 1)
    assert [e["participant_id"] for e in lenient] == ["gone"]


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


def simulated_tasks(task_effect: float, seed: int) -> dict:
    cfg = SimulationConfig(
        n_participants=30,
        n_images=30,
        task_effect=task_effect,
        mention_prob_base=0.3,
        attention_fail_rate=0.0,
        withdraw_rate=0.0,
        seed=seed,
    )
    rows, _, _ = simulate_study(cfg)
    return analysis.analyze_tasks(rows_to_frame(rows), n_boot=200, seed=seed)


def test_planted_task_accuracy_gain_is_recovered() -> None:
    tasks = simulated_tasks(0.4, seed=5)
    assert tasks["accuracy_diff"]["ci_low"] > 0
    assert tasks["paired_test"]["p_value"] < 0.05
    assert (
        tasks["per_system"]["finetuned"]["answerable"]["share"]
        > tasks["per_system"]["base"]["answerable"]["share"]
    )
    high = [c for c in tasks["calibration"] if c["confidence"] >= 4]
    low = [c for c in tasks["calibration"] if c["confidence"] <= 2]
    assert min(c["share"] for c in high) > max(c["share"] for c in low)


def test_no_task_accuracy_gain_when_none_planted() -> None:
    p_values = [simulated_tasks(0.0, seed)["paired_test"]["p_value"] for seed in range(8)]
    assert sum(p < 0.05 for p in p_values) <= 1, p_values


def planted_per_image(tmp_path: Path, shuffle: bool) -> tuple[pd.DataFrame, Path]:
    rng = np.random.default_rng(0)
    images = [f"im{j}" for j in range(40)]
    gain = np.linspace(-1, 2, 40)
    rows = []
    for pid in range(10):
        for j, image in enumerate(images):
            for system, shift in (("base", 0.0), ("finetuned", gain[j])):
                value = int(np.clip(round(4 + shift + rng.normal(0, 0.5)), 1, 7))
                rows.append(
                    {
                        "participant_id": f"p{pid}",
                        "participant_status": "completed",
                        "trial_index": j,
                        "trial_kind": "rating",
                        "image": image,
                        "system": system,
                        "position": 1,
                        "item": "usefulness",
                        "value": str(value),
                        "correct": "",
                    }
                )
    metric_gain = rng.permutation(gain) if shuffle else gain + rng.normal(0, 0.2, 40)
    per_image = [
        {"system": s, "image": im, "caption": "", "CIDEr-D": float(m if s == "finetuned" else 0.0)}
        for im, m in zip(images, metric_gain, strict=True)
        for s in ("base", "finetuned")
    ]
    (tmp_path / "per_image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in per_image))
    return pd.DataFrame(rows), tmp_path / "metrics.json"


def test_metric_validity_planted_relation_vs_shuffled(tmp_path: Path) -> None:
    responses, metrics = planted_per_image(tmp_path, shuffle=False)
    planted = analyze_metric_validity(responses, metrics, "usefulness", 200, 0)["outcomes"]["usefulness"][
        "CIDEr-D"
    ]
    assert planted["tau"] > 0.5 and planted["ci_low"] > 0.3
    responses, metrics = planted_per_image(tmp_path, shuffle=True)
    shuffled = analyze_metric_validity(responses, metrics, "usefulness", 200, 0)["outcomes"]["usefulness"][
        "CIDEr-D"
    ]
    assert abs(shuffled["tau"]) < 0.25 and shuffled["ci_low"] < 0 < shuffled["ci_high"]


def test_kendall_ci_brackets_estimate() -> None:
    x = np.arange(30, dtype=float)
    result = kendall_with_ci(x, x + np.random.default_rng(1).normal(0, 5, 30), 300, 0)
    assert result["ci_low"] <= result["tau"] <= result["ci_high"]


def test_rank_biserial_and_hodges_lehmann() -> None:
    assert analysis.rank_biserial(np.array([1.0, 2.0, 3.0])) == 1.0
    assert analysis.rank_biserial(np.array([-1.0, 1.0])) == 0.0
    hl, low, high = analysis.hodges_lehmann(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]))
    assert hl == 5.5 and low < 5.5 < high


@pytest.mark.parametrize(
    ("answer", "key", "expected"),
    [
        ("Three.", AnswerKey(kind="number", answer="3"), True),
        ("3", AnswerKey(kind="number", answer="three"), True),
        ("twenty-one", AnswerKey(kind="number", answer="21"), True),
        ("four", AnswerKey(kind="number", answer="3"), False),
        ("  RED!! ", AnswerKey(kind="text", answer="red"), True),
        ("crimson", AnswerKey(kind="text", answer="red", accepted=["Crimson"]), True),
        ("Café Nero", AnswerKey(kind="text", answer="cafe nero"), True),
        ("blue", AnswerKey(kind="choice", answer="red"), False),
        ("The description does not say.", AnswerKey(kind="choice", answer="red"), False),
        ("does not say", AnswerKey(kind="choice", answer=NOT_STATED), True),
        (NOT_STATED, AnswerKey(kind="choice", answer="Does not say"), True),
        ("red", AnswerKey(kind="choice", answer=NOT_STATED), False),
    ],
)
def test_score_answer(answer: str, key: AnswerKey, expected: bool) -> None:
    assert score_answer(answer, key) is expected


def test_is_not_stated_spellings() -> None:
    assert all(is_not_stated(a) for a in ("not_stated", "Not stated", "The description does not say."))
    assert not is_not_stated("no")


def test_analyze_command_reports_missing_export(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "responses.csv" in result.output and "altcap study export" in " ".join(result.output.split())
