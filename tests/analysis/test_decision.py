"""The pre-registered decision rule on its edge cases (issue #7)."""

from __future__ import annotations

import pytest

from altcap.analysis.decision import DecisionRule, apply_decision_rule, hash_rule

RULE = DecisionRule()


def make_primary(median: float, low: float, high: float, p_value: float) -> dict:
    return {
        "n_pairs": 30,
        "p_value": p_value,
        "median_gain": median,
        "median_gain_ci_low": low,
        "median_gain_ci_high": high,
    }


def make_cmp(metric: str, diff: float, low: float, high: float) -> dict:
    return {
        "a": "base",
        "b": "finetuned",
        "metric": metric,
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "p_value": 0.01,
    }


GOOD_METRICS = [make_cmp("CIDEr-D", 0.1, 0.05, 0.15), make_cmp("SPICE", 0.02, 0.01, 0.03)]


def statuses(result: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in result["criteria"]}


def test_all_criteria_met_is_go() -> None:
    result = apply_decision_rule(RULE, make_primary(1.0, 0.6, 1.4, 0.001), GOOD_METRICS)
    assert result["verdict"] == "GO"
    assert statuses(result) == {
        "usefulness": "met",
        "metric:CIDEr-D": "met",
        "metric:SPICE": "met",
        "hallucination": "not_assessed",
        "task_accuracy": "not_assessed",
    }


def test_median_exactly_at_threshold_counts_as_met() -> None:
    result = apply_decision_rule(RULE, make_primary(0.5, 0.2, 0.9, 0.01), GOOD_METRICS)
    assert statuses(result)["usefulness"] == "met"
    assert result["verdict"] == "GO"


def test_p_exactly_alpha_is_not_significant_and_straddling_ci_is_inconclusive() -> None:
    result = apply_decision_rule(RULE, make_primary(0.8, 0.3, 1.2, 0.05), GOOD_METRICS)
    assert statuses(result)["usefulness"] == "inconclusive"
    assert result["verdict"] == "INCONCLUSIVE"


def test_gain_below_threshold_with_ci_straddling_is_inconclusive() -> None:
    result = apply_decision_rule(RULE, make_primary(0.4, 0.25, 0.85, 0.004), GOOD_METRICS)
    assert statuses(result)["usefulness"] == "inconclusive"
    assert result["verdict"] == "INCONCLUSIVE"


def test_gain_clearly_below_threshold_is_no_go() -> None:
    result = apply_decision_rule(RULE, make_primary(0.2, 0.0, 0.45, 0.04), GOOD_METRICS)
    assert statuses(result)["usefulness"] == "not_met"
    assert result["verdict"] == "NO-GO"


def test_ci_upper_exactly_at_threshold_still_straddles() -> None:
    result = apply_decision_rule(RULE, make_primary(0.2, 0.0, 0.5, 0.04), GOOD_METRICS)
    assert statuses(result)["usefulness"] == "inconclusive"


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.01, 0.2, "met"), (0.0, 0.2, "inconclusive"), (-0.05, 0.1, "inconclusive"), (-0.2, -0.01, "not_met")],
)
def test_metric_ci_must_be_above_zero(low: float, high: float, expected: str) -> None:
    metrics = [make_cmp("CIDEr-D", (low + high) / 2, low, high), GOOD_METRICS[1]]
    result = apply_decision_rule(RULE, make_primary(1.0, 0.6, 1.4, 0.001), metrics)
    assert statuses(result)["metric:CIDEr-D"] == expected
    assert result["verdict"] == {"met": "GO", "inconclusive": "INCONCLUSIVE", "not_met": "NO-GO"}[expected]


def test_lower_is_better_metric_needs_ci_below_zero() -> None:
    rule = DecisionRule(metrics=["FGD"])
    met = apply_decision_rule(rule, make_primary(1.0, 0.6, 1.4, 0.001), [make_cmp("FGD", -0.1, -0.2, -0.05)])
    worse = apply_decision_rule(rule, make_primary(1.0, 0.6, 1.4, 0.001), [make_cmp("FGD", 0.1, 0.05, 0.2)])
    assert statuses(met)["metric:FGD"] == "met"
    assert statuses(worse)["metric:FGD"] == "not_met"


def test_missing_spice_uses_available_metrics_and_says_so() -> None:
    result = apply_decision_rule(RULE, make_primary(1.0, 0.6, 1.4, 0.001), GOOD_METRICS[:1])
    assert result["verdict"] == "GO"
    assert "metric:SPICE" not in statuses(result)
    assert any("SPICE" in note and "available" in note for note in result["notes"])


def test_no_metrics_at_all_cannot_be_go() -> None:
    result = apply_decision_rule(RULE, make_primary(1.0, 0.6, 1.4, 0.001), [])
    assert statuses(result)["metrics"] == "not_assessed"
    assert result["verdict"] == "INCONCLUSIVE"


def test_no_participants_is_inconclusive() -> None:
    result = apply_decision_rule(RULE, None, GOOD_METRICS)
    assert statuses(result)["usefulness"] == "not_assessed"
    assert result["verdict"] == "INCONCLUSIVE"


@pytest.mark.parametrize(
    ("estimate", "low", "high", "expected"),
    [(0.05, 0.0, 0.1, "met"), (0.08, 0.02, 0.14, "inconclusive"), (0.2, 0.1, 0.3, "not_met")],
)
def test_hallucination_margin(estimate: float, low: float, high: float, expected: str) -> None:
    increase = {"estimate": estimate, "ci_low": low, "ci_high": high}
    result = apply_decision_rule(RULE, make_primary(1.0, 0.6, 1.4, 0.001), GOOD_METRICS, increase)
    assert statuses(result)["hallucination"] == expected


def test_task_accuracy_drop_beyond_margin_is_no_go() -> None:
    drop = {"estimate": 0.15, "ci_low": 0.08, "ci_high": 0.22}
    result = apply_decision_rule(RULE, make_primary(1.0, 0.6, 1.4, 0.001), GOOD_METRICS, None, drop)
    assert statuses(result)["task_accuracy"] == "not_met"
    assert result["verdict"] == "NO-GO"


def test_not_met_dominates_inconclusive() -> None:
    metrics = [make_cmp("CIDEr-D", -0.1, -0.2, -0.05), make_cmp("SPICE", 0.0, -0.01, 0.01)]
    result = apply_decision_rule(RULE, make_primary(0.4, 0.2, 0.8, 0.01), metrics)
    assert result["verdict"] == "NO-GO"


def test_rule_hash_changes_with_rule_and_is_recorded() -> None:
    result = apply_decision_rule(RULE, None, [])
    assert result["rule_sha256"] == hash_rule(DecisionRule())
    assert hash_rule(DecisionRule(min_median_gain=0.6)) != hash_rule(RULE)
    assert result["rule"]["min_median_gain"] == 0.5


def test_a_primary_test_that_did_not_run_leaves_usefulness_not_assessed() -> None:
    from altcap.analysis.decision import judge_usefulness

    primary = {"item": "usefulness", "n_pairs": 6, "note": "too few non-zero pairs"}  # all gains 0
    criterion = judge_usefulness(primary, DecisionRule())
    assert criterion.status == "not_assessed" and criterion.detail == "too few non-zero pairs"
