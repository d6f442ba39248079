"""The analysis statistics: exclusions, task accuracy, effect sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from altcap.analysis import stats
from altcap.analysis.power import rows_to_frame
from altcap.analysis.simulate import SimulationConfig, simulate_study


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
        e["participant_id"]: e["reasons"] for e in stats.find_exclusions(responses, participants, 0.8, 0)
    }
    assert set(excluded) == {"gone", "asleep", "quit"}
    assert excluded["gone"] == ["withdrawn"]
    assert "attention" in excluded["asleep"][0]
    assert excluded["quit"] == ["incomplete: 2 of 4 main trials (50%)"]
    lenient = stats.find_exclusions(responses, participants, 0.5, 1)
    assert [e["participant_id"] for e in lenient] == ["gone"]


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
    return stats.analyze_tasks(rows_to_frame(rows), n_boot=200, seed=seed)


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


def test_rank_biserial_and_hodges_lehmann() -> None:
    assert stats.rank_biserial(np.array([1.0, 2.0, 3.0])) == 1.0
    assert stats.rank_biserial(np.array([-1.0, 1.0])) == 0.0
    hl, low, high = stats.hodges_lehmann(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]))
    assert hl == 5.5 and low < 5.5 < high
