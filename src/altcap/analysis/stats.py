"""Statistics of an exported study (issues #7, #14): exclusions, descriptives, primary test, models.

Every function takes the long responses table (one row per answer, schemas.md) and returns a
JSON-ready dict; `altcap.analysis.commands.run_analyze` assembles them into analysis.json.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

SYSTEMS = ("base", "finetuned")
REQUIRED_COLUMNS = (
    "participant_id", "participant_status", "trial_index", "trial_kind", "image", "system", "position",
    "item", "value", "correct",
)  # fmt: skip


class ExportError(ValueError):
    """A study export that cannot be analysed; the message names the file and the fix."""


def load_export(export_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], bool]:
    """Read responses.csv, participants.csv and study.json of a study export.

    Args:
        export_dir: the folder `altcap study export` (or `study simulate`) wrote.

    Returns:
        (responses, participants, study design, simulated?) -- simulated when study.json says so or a
        SIMULATED.txt marker is present.
    """
    paths = {name: export_dir / name for name in ("responses.csv", "participants.csv", "study.json")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ExportError(f"{export_dir}: missing {', '.join(missing)}; run `altcap study export` first")
    responses = pd.read_csv(paths["responses.csv"], dtype=str, keep_default_na=False)
    absent = [c for c in REQUIRED_COLUMNS if c not in responses.columns]
    if absent:
        raise ExportError(
            f"{paths['responses.csv']}: missing columns {absent}; re-export with `altcap study export`"
        )
    responses["trial_index"] = pd.to_numeric(responses["trial_index"], errors="coerce")
    participants = pd.read_csv(paths["participants.csv"], dtype=str, keep_default_na=False)
    study = json.loads(paths["study.json"].read_text(encoding="utf-8"))
    simulated = bool(study.get("simulated")) or (export_dir / "SIMULATED.txt").is_file()
    return responses, participants, study, simulated


def find_exclusions(
    responses: pd.DataFrame, participants: pd.DataFrame, min_completion: float, max_attention_failures: int
) -> list[dict[str, Any]]:
    """Participants excluded by the pre-registered rules, each with every reason that applies.

    Args:
        responses: the long responses table.
        participants: participants.csv.
        min_completion: share of the study's rating trials a participant must have answered.
        max_attention_failures: attention checks a participant may fail and stay in.

    Returns:
        [{"participant_id", "reasons": [...]}], sorted by id.
    """
    status = dict(zip(participants.get("participant_id", []), participants.get("status", []), strict=True))
    status |= {
        p: s
        for p, s in zip(responses["participant_id"], responses["participant_status"], strict=True)
        if s == "withdrawn"
    }
    # Verifiers answer only "verify" trials: their completion is measured against other verifiers.
    main = responses[responses["trial_kind"].isin(["rating", "task", "verify"])]
    done = main.groupby("participant_id")["trial_index"].nunique()
    role = main.groupby("participant_id")["trial_kind"].agg(
        lambda kinds: "verify" if (kinds == "verify").any() else "main"
    )
    expected_by_role = done.groupby(role).max().to_dict()
    attention = responses[responses["trial_kind"] == "attention"]
    failures = attention[attention["correct"].str.lower() == "false"].groupby("participant_id").size()
    excluded = []
    for pid in sorted(set(status) | set(responses["participant_id"])):
        reasons = []
        if status.get(pid) == "withdrawn":
            reasons.append("withdrawn")
        if int(failures.get(pid, 0)) > max_attention_failures:
            reasons.append(
                f"failed {int(failures[pid])} attention check(s) (allowed {max_attention_failures})"
            )
        expected = int(expected_by_role.get(role.get(pid, "main"), 0))
        share = done.get(pid, 0) / expected if expected else 0.0
        if share < min_completion:
            reasons.append(f"incomplete: {int(done.get(pid, 0))} of {expected} main trials ({share:.0%})")
        if reasons:
            excluded.append({"participant_id": pid, "reasons": reasons})
    return excluded


def select_likert(responses: pd.DataFrame, item: str) -> pd.DataFrame:
    """Main-trial rows of one Likert item, with numeric value/position and a 0/1 finetuned column."""
    rows = responses[(responses["trial_kind"] == "rating") & (responses["item"] == item)].copy()
    rows = rows[rows["system"].isin(SYSTEMS)]
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    rows["position"] = pd.to_numeric(rows["position"], errors="coerce")
    rows["finetuned"] = (rows["system"] == "finetuned").astype(int)
    return rows.dropna(subset=["value"])


def describe_likert(responses: pd.DataFrame, items: list[str], scale_max: int) -> dict[str, Any]:
    """Per item x system: n, mean, sd, median, quartiles and counts of every scale point."""
    out: dict[str, Any] = {}
    for item in items:
        rows = select_likert(responses, item)
        out[item] = {}
        for system in SYSTEMS:
            v = rows.loc[rows["system"] == system, "value"]
            counts = v.astype(int).value_counts().reindex(range(1, scale_max + 1), fill_value=0)
            out[item][system] = {
                "n": len(v),
                "mean": float(v.mean()) if len(v) else None,
                "sd": float(v.std()) if len(v) > 1 else None,
                "median": float(v.median()) if len(v) else None,
                "q1": float(v.quantile(0.25)) if len(v) else None,
                "q3": float(v.quantile(0.75)) if len(v) else None,
                "counts": {str(k): int(c) for k, c in counts.items()},
            }
    return out


def compute_wilson(successes: int, n: int) -> dict[str, Any]:
    """Proportion with its 95% Wilson interval."""
    if n == 0:
        return {"k": 0, "n": 0, "share": None, "ci_low": None, "ci_high": None}
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    share = successes / n
    return {"k": int(successes), "n": int(n), "share": share, "ci_low": float(low), "ci_high": float(high)}


def describe_preferences(responses: pd.DataFrame) -> dict[str, Any]:
    """Shares of trials preferring each system / none, with Wilson CIs (trials treated as independent)."""
    rows = responses[(responses["trial_kind"] == "rating") & (responses["item"] == "preference")]
    n = len(rows)
    shares = {v: compute_wilson(int((rows["value"] == v).sum()), n) for v in (*SYSTEMS, "none")}
    return {
        "n_trials": n,
        "shares": shares,
        "note": "Wilson CIs treat trials as independent; participant-level CIs would be wider.",
    }


def rank_biserial(diffs: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (Kerby): (R+ - R-) / (R+ + R-), zero differences dropped."""
    d = diffs[diffs != 0]
    if len(d) == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def hodges_lehmann(diffs: np.ndarray) -> tuple[float, float, float]:
    """Hodges-Lehmann shift (median of Walsh averages) with its ~95% distribution-free CI.

    Hand-written because neither scipy nor statsmodels ships it; the CI uses the normal approximation
    to the signed-rank distribution to pick the Walsh-average order statistics.
    """
    n = len(diffs)
    i, j = np.triu_indices(n)
    walsh = np.sort((diffs[i] + diffs[j]) / 2)
    m = len(walsh)
    k = int(np.floor(n * (n + 1) / 4 - 1.959964 * np.sqrt(n * (n + 1) * (2 * n + 1) / 24)))
    k = min(max(k, 0), m - 1)
    return float(np.median(walsh)), float(walsh[k]), float(walsh[m - 1 - k])


def bootstrap_ci(data: np.ndarray, statistic, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of `statistic` over resampled rows of `data`.

    scipy.stats.bootstrap is not used because its BCa/percentile paths fail on the degenerate
    (all-equal) resamples that small Likert studies produce; resampling here is plain and robust.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), (n_boot, len(data)))
    boots = np.array([statistic(data[row]) for row in idx])
    return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def compute_participant_diffs(responses: pd.DataFrame, item: str) -> pd.Series:
    """Per-participant mean rating, finetuned minus base (participants with both systems only)."""
    rows = select_likert(responses, item)
    means = rows.pivot_table(index="participant_id", columns="system", values="value", aggfunc="mean")
    if not set(SYSTEMS) <= set(means.columns):
        return pd.Series(dtype=float)
    return (means["finetuned"] - means["base"]).dropna()


def run_primary_test(responses: pd.DataFrame, item: str, n_boot: int, seed: int) -> dict[str, Any]:
    """The pre-registered primary test: one-sided Wilcoxon signed-rank on per-participant mean gains.

    Returns:
        n_pairs, W, p_value, median_gain with bootstrap CI, rank-biserial with bootstrap CI, HL shift with CI.
    """
    diffs = compute_participant_diffs(responses, item).to_numpy()
    block: dict[str, Any] = {
        "item": item,
        "n_pairs": len(diffs),
        "test": "Wilcoxon signed-rank, one-sided "
        "(finetuned > base), zero differences dropped (zero_method='wilcox')",
    }
    if len(diffs) < 2 or np.all(diffs == 0):
        return block | {"n_pairs": len(diffs) if len(diffs) >= 2 else 0, "note": "too few non-zero pairs"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about ties/normal approximation; the method is reported
        result = stats.wilcoxon(diffs, alternative="greater", zero_method="wilcox")
    hl, hl_low, hl_high = hodges_lehmann(diffs)
    med_low, med_high = bootstrap_ci(diffs, np.median, n_boot, seed)
    rb_low, rb_high = bootstrap_ci(diffs, rank_biserial, n_boot, seed + 1)
    return block | {
        "statistic_W": float(result.statistic),
        "p_value": float(result.pvalue),
        "median_gain": float(np.median(diffs)),
        "median_gain_ci_low": med_low,
        "median_gain_ci_high": med_high,
        "mean_gain": float(diffs.mean()),
        "rank_biserial": rank_biserial(diffs),
        "rank_biserial_ci_low": rb_low,
        "rank_biserial_ci_high": rb_high,
        "hodges_lehmann": hl,
        "hodges_lehmann_ci_low": hl_low,
        "hodges_lehmann_ci_high": hl_high,
        "n_boot": n_boot,
    }


def fit_ordinal_model(responses: pd.DataFrame, item: str) -> dict[str, Any]:
    """Cumulative-logit model of ratings on system, position and trial order, participant-clustered SEs."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    rows = select_likert(responses, item).dropna(subset=["position"])
    note = (
        "statsmodels has no random-effects ordinal model: fitted OrderedModel (cumulative logit) with "
        "participant-clustered (cluster-robust) standard errors instead of participant/image random effects."
    )
    if rows["value"].nunique() < 3 or rows["participant_id"].nunique() < 3:
        return {"note": note, "error": "too few rating levels or participants to fit"}
    exog = pd.DataFrame(
        {
            "finetuned": rows["finetuned"].astype(float),
            "position_2": (rows["position"] == 2).astype(float),
            "trial_order": (rows["trial_index"] / rows["trial_index"].max()).astype(float),
        }
    )
    endog = pd.Series(pd.Categorical(rows["value"].astype(int), ordered=True), index=rows.index)
    groups = pd.factorize(rows["participant_id"])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = OrderedModel(endog, exog, distr="logit").fit(
            method="bfgs", disp=False, maxiter=500, cov_type="cluster", cov_kwds={"groups": groups}
        )
    ci = fit.conf_int()
    coefs = {
        name: {
            "log_odds": float(fit.params[name]),
            "ci_low": float(ci.loc[name, 0]),
            "ci_high": float(ci.loc[name, 1]),
            "p_value": float(fit.pvalues[name]),
            "odds_ratio": float(np.exp(fit.params[name])),
        }
        for name in exog.columns
    }
    return {
        "model": "OrderedModel(distr='logit'): value ~ finetuned + position_2 + trial_order",
        "n_obs": len(rows),
        "n_clusters": int(groups.max() + 1),
        "coefficients": coefs,
        "note": note,
        "converged": bool(fit.mle_retvals.get("converged", True)),
    }


def to_bool(values: pd.Series) -> pd.Series:
    """Export booleans ("true"/"false"/"1"/"0") as floats; anything else becomes NaN."""
    return values.astype(str).str.strip().str.lower().map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0})


def select_tasks(responses: pd.DataFrame) -> pd.DataFrame:
    """Task-answer rows with numeric correctness, answerability and the matching confidence rating."""
    from altcap.study.scoring import is_not_stated

    tasks = responses[responses["trial_kind"] == "task"]
    answers = tasks[(tasks["item"] == "task_answer") & tasks["system"].isin(SYSTEMS)].copy()
    if answers.empty:
        return answers
    answers["correct_num"] = to_bool(answers["correct"])
    answers["answerable"] = (~answers["value"].map(is_not_stated)).astype(float)
    answers["finetuned"] = (answers["system"] == "finetuned").astype(float)
    conf = tasks[tasks["item"] == "task_confidence"][["participant_id", "question_id", "value"]]
    conf = conf.rename(columns={"value": "confidence"}).drop_duplicates(["participant_id", "question_id"])
    answers = answers.merge(conf, on=["participant_id", "question_id"], how="left")
    answers["confidence"] = pd.to_numeric(answers["confidence"], errors="coerce")
    return answers.dropna(subset=["correct_num"])


def cluster_bootstrap_diff(rows: pd.DataFrame, column: str, n_boot: int, seed: int) -> tuple[float, float]:
    """95% CI of mean(column | finetuned) - mean(column | base), resampling participants."""
    per = rows.groupby(["participant_id", "system"])[column].agg(["sum", "count"]).unstack(fill_value=0)
    sums, counts = per["sum"].to_numpy(), per["count"].to_numpy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per), (n_boot, len(per)))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    diffs = means[:, 1] - means[:, 0]
    diffs = diffs[np.isfinite(diffs)]
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def fit_gee_logistic(rows: pd.DataFrame, column: str) -> dict[str, Any]:
    """Paired test: GEE logistic regression of `column` on system, exchangeable within participant."""
    import statsmodels.api as sm

    groups = pd.factorize(rows["participant_id"])[0]
    exog = sm.add_constant(rows[["finetuned"]].astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.GEE(
            rows[column].astype(float),
            exog,
            groups=groups,
            family=sm.families.Binomial(),
            cov_struct=sm.cov_struct.Exchangeable(),
        ).fit()
    low, high = fit.conf_int().loc["finetuned"]
    return {
        "model": "statsmodels GEE, Binomial(logit), exchangeable within participant (no mixed model: "
        "statsmodels has no frequentist mixed-effects logistic regression)",
        "log_odds_finetuned": float(fit.params["finetuned"]),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(fit.pvalues["finetuned"]),
        "n_clusters": int(groups.max() + 1),
    }


def analyze_tasks(responses: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any] | None:
    """Task accuracy and answerable rate per system, paired GEE test, difference CI and calibration."""
    rows = select_tasks(responses)
    if rows.empty or rows["system"].nunique() < 2:
        return None
    per_system = {
        s: {
            "accuracy": compute_wilson(int(g["correct_num"].sum()), len(g)),
            "answerable": compute_wilson(int(g["answerable"].sum()), len(g)),
        }
        for s, g in rows.groupby("system")
    }
    diff = per_system["finetuned"]["accuracy"]["share"] - per_system["base"]["accuracy"]["share"]
    low, high = cluster_bootstrap_diff(rows, "correct_num", n_boot, seed)
    calibration = [
        {"system": s, "confidence": int(c), **compute_wilson(int(g["correct_num"].sum()), len(g))}
        for (s, c), g in rows.dropna(subset=["confidence"]).groupby(["system", "confidence"])
    ]
    return {
        "n_answers": len(rows),
        "per_system": per_system,
        "accuracy_diff": {
            "estimate": diff,
            "ci_low": low,
            "ci_high": high,
            "method": f"participant cluster bootstrap (n={n_boot})",
        },
        "accuracy_drop": {"estimate": -diff, "ci_low": -high, "ci_high": -low},
        "paired_test": fit_gee_logistic(rows, "correct_num"),
        "calibration": calibration,
    }


def analyze_hallucination(responses: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any] | None:
    """Verifier hallucination rate per system (rows item "hallucination", value true/false), if any."""
    rows = responses[(responses["item"] == "hallucination") & responses["system"].isin(SYSTEMS)].copy()
    rows = rows[rows["trial_kind"] != "practice"]
    rows["flag"] = to_bool(rows["value"])
    rows = rows.dropna(subset=["flag"])
    if rows.empty or rows["system"].nunique() < 2:
        return None
    per_system = {s: compute_wilson(int(g["flag"].sum()), len(g)) for s, g in rows.groupby("system")}
    low, high = cluster_bootstrap_diff(rows, "flag", n_boot, seed)
    increase = per_system["finetuned"]["share"] - per_system["base"]["share"]
    return {
        "per_system": per_system,
        "increase": {
            "estimate": increase,
            "ci_low": low,
            "ci_high": high,
            "method": f"participant cluster bootstrap (n={n_boot})",
        },
    }
