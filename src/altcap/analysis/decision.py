"""The pre-registered go/no-go decision rule (issue #7), as a pure function of the analysis numbers.

Each criterion is `met` when its pre-registered point criterion holds. When it does not, its 95% CI
decides: a CI that still includes the threshold makes it `inconclusive` (more participants could
change the answer), a CI entirely on the wrong side makes it `not_met`. A criterion whose data were
not collected is `not_assessed`.

Overall: NO-GO if any criterion is not met; GO if every assessed criterion is met and both required
criteria (usefulness, automatic metrics) were assessed; otherwise INCONCLUSIVE (extend the study).
Hallucination and task accuracy only count when the study collected them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel

from altcap.study.config import DecisionRule

Status = Literal["met", "not_met", "inconclusive", "not_assessed"]
Verdict = Literal["GO", "NO-GO", "INCONCLUSIVE"]
LOWER_IS_BETTER = frozenset({"FGD"})
REQUIRED_CRITERIA = ("usefulness", "metric")  # name prefixes: metric:CIDEr-D, metric:SPICE, ...


class Criterion(BaseModel):
    """One criterion's outcome, with the numbers it was decided on."""

    name: str
    status: Status
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    detail: str = ""


def hash_rule(rule: DecisionRule) -> str:
    """sha256 of the rule's canonical JSON, quoted in the memo so a changed rule shows."""
    canonical = json.dumps(rule.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def judge_threshold(estimate: float, ci: tuple[float, float], threshold: float, met: bool) -> Status:
    """met / inconclusive (CI includes the threshold) / not_met (CI entirely on the wrong side)."""
    if met:
        return "met"
    return "inconclusive" if ci[0] <= threshold <= ci[1] else "not_met"


def judge_usefulness(primary: dict[str, Any] | None, rule: DecisionRule) -> Criterion:
    """(a) significant one-sided primary test and median per-participant gain >= min_median_gain."""
    if not primary or primary.get("n_pairs", 0) == 0:
        return Criterion(name="usefulness", status="not_assessed", detail="no usable participants")
    if "p_value" not in primary:  # e.g. every participant's gain is 0: the test did not run
        return Criterion(name="usefulness", status="not_assessed", detail=primary.get("note", "no test"))
    median, p_value = primary["median_gain"], primary["p_value"]
    ci = (primary["median_gain_ci_low"], primary["median_gain_ci_high"])
    met = p_value < rule.alpha and median >= rule.min_median_gain
    status = judge_threshold(median, ci, rule.min_median_gain, met)
    detail = (
        f"p={p_value:.4g} (alpha {rule.alpha}), median gain {median:.3g} (need >= {rule.min_median_gain})"
    )
    return Criterion(
        name="usefulness",
        status=status,
        estimate=median,
        ci_low=ci[0],
        ci_high=ci[1],
        threshold=rule.min_median_gain,
        p_value=p_value,
        detail=detail,
    )


def judge_metric(comparison: dict[str, Any]) -> Criterion:
    """(b) one metric: finetuned minus base with its 95% CI above zero (below for lower-is-better)."""
    metric = comparison["metric"]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    low, high = sorted((sign * comparison["ci_low"], sign * comparison["ci_high"]))
    diff = sign * comparison["diff"]
    status = judge_threshold(diff, (low, high), 0.0, low > 0)
    return Criterion(
        name=f"metric:{metric}",
        status=status,
        estimate=comparison["diff"],
        ci_low=comparison["ci_low"],
        ci_high=comparison["ci_high"],
        threshold=0.0,
        p_value=comparison.get("p_value"),
        detail=f"{metric} finetuned - base {comparison['diff']:.4g}; 95% CI must be "
        + ("below zero (lower is better)" if sign < 0 else "above zero"),
    )


def judge_metrics(comparisons: list[dict[str, Any]], rule: DecisionRule) -> tuple[list[Criterion], list[str]]:
    """(b) every rule metric that was computed; returns the criteria and notes on missing metrics."""
    by_metric = {c["metric"]: c for c in comparisons if c.get("a") == "base" and c.get("b") == "finetuned"}
    missing = [m for m in rule.metrics if m not in by_metric]
    notes = [f"{m} not available in metrics.json; decided on the available metrics" for m in missing]
    criteria = [judge_metric(by_metric[m]) for m in rule.metrics if m in by_metric]
    if not criteria:
        criteria = [
            Criterion(name="metrics", status="not_assessed", detail="none of the rule's metrics computed")
        ]
    return criteria, notes


def judge_increase(name: str, diff: dict[str, Any] | None, margin: float) -> Criterion:
    """(c)/(d) a worsening (finetuned worse than base by `diff`) must not exceed `margin`."""
    if not diff:
        return Criterion(name=name, status="not_assessed", detail="not collected in this study")
    estimate, ci = diff["estimate"], (diff["ci_low"], diff["ci_high"])
    status = judge_threshold(estimate, ci, margin, estimate <= margin)
    return Criterion(
        name=name,
        status=status,
        estimate=estimate,
        ci_low=ci[0],
        ci_high=ci[1],
        threshold=margin,
        p_value=diff.get("p_value"),
        detail=f"worsening {estimate:.3g} (allowed <= {margin})",
    )


def decide_verdict(criteria: list[Criterion]) -> Verdict:
    """Combine criteria into GO / NO-GO / INCONCLUSIVE (see module docstring)."""
    statuses = [c.status for c in criteria]
    if "not_met" in statuses:
        return "NO-GO"
    required_assessed = all(
        any(c.status != "not_assessed" and c.name.startswith(req) for c in criteria)
        for req in REQUIRED_CRITERIA
    )
    if required_assessed and all(s in ("met", "not_assessed") for s in statuses):
        return "GO"
    return "INCONCLUSIVE"


def apply_decision_rule(
    rule: DecisionRule,
    primary: dict[str, Any] | None,
    comparisons: list[dict[str, Any]],
    hallucination_increase: dict[str, Any] | None = None,
    task_accuracy_drop: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply the pre-registered rule.

    Args:
        rule: the frozen decision rule.
        primary: the primary test block (n_pairs, p_value, median_gain and its CI) or None.
        comparisons: metrics.json `comparisons` (base vs finetuned rows are used).
        hallucination_increase: {estimate, ci_low, ci_high} of rate(finetuned) - rate(base), or None.
        task_accuracy_drop: {estimate, ci_low, ci_high} of acc(base) - acc(finetuned), or None.

    Returns:
        {"verdict", "criteria": [...], "notes": [...], "rule": ..., "rule_sha256": ...}.
    """
    metric_criteria, notes = judge_metrics(comparisons, rule)
    criteria = [
        judge_usefulness(primary, rule),
        *metric_criteria,
        judge_increase("hallucination", hallucination_increase, rule.max_hallucination_increase),
        judge_increase("task_accuracy", task_accuracy_drop, rule.max_task_accuracy_drop),
    ]
    return {
        "verdict": decide_verdict(criteria),
        "criteria": [c.model_dump() for c in criteria],
        "notes": notes,
        "rule": rule.model_dump(mode="json"),
        "rule_sha256": hash_rule(rule),
    }
