"""Simulated studies in the export format, for demos, tests and power analysis (issues #7, #14).

Generative model (all on the latent logistic scale; defaults in `SimulationConfig`):

    rating of participant i, image j, system s (0 = base, 1 = finetuned), position p, trial t:
        eta = (effect + b_i + c_j) * s + u_i + v_j + position_effect * [p == 2] + order_effect * t / T
        y*  = eta + e,  e ~ Logistic(0, 1)
        y   = 1 + #{k : y* > tau_k},  tau = scale_max - 1 cut points evenly spaced on [-3, 3]
    u_i ~ N(0, participant_sd), v_j ~ N(0, image_sd)            (random intercepts)
    b_i ~ N(0, participant_slope_sd), c_j ~ N(0, image_slope_sd) (random system effects)

That is a cumulative-logit model with crossed participant and image random effects; `effect` is the
true log-odds shift of fine-tuned captions. Preference: the caption with the higher y* (none when
|difference| < 0.5). Inattentive participants (rate `attention_fail_rate`) rate uniformly at random
and fail each attention check with probability 0.8 (attentive ones 0.02). Participants withdraw
(`withdraw_rate`) or stop early while still active (`incomplete_rate`) after a uniform share of trials.

Task trials: a caption mentions the asked detail with probability `mention_prob_base` (base) or
`mention_prob_base + task_effect` (finetuned), coupled per image (one uniform draw for both captions).
Mentioned -> answered correctly with probability 0.9 (confidence 4-5); not mentioned -> "not_stated"
with probability 0.7, else a guess correct with probability 0.25 (confidence 1-3), scored by `score_answer`.

Every output is marked simulated: study.json has `"simulated": true` and a SIMULATED.txt sits beside it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from altcap.config import StageConfig
from altcap.provenance import build_provenance
from altcap.study.scoring import NOT_STATED, AnswerKey, score_answer

SIMULATED_MARKER = "SIMULATED.txt"
SIM_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six"]


class SimulationConfig(StageConfig):
    """`altcap study simulate` settings (the model is in this module's docstring)."""

    n_participants: int = Field(default=30, ge=1, description="Participants invited.")
    effect: float = Field(default=0.5, description="True log-odds shift of fine-tuned usefulness ratings.")
    n_images: int = Field(default=20, ge=2, description="Images rated by every participant.")
    scale_max: int = Field(default=7, ge=3, description="Likert scale maximum.")
    participant_sd: float = Field(default=0.8, ge=0, description="SD of participant random intercepts.")
    image_sd: float = Field(default=0.5, ge=0, description="SD of image random intercepts.")
    participant_slope_sd: float = Field(default=1.0, ge=0, description="SD of participant system effects.")
    image_slope_sd: float = Field(default=0.5, ge=0, description="SD of image system effects.")
    position_effect: float = Field(default=0.0, description="Log-odds shift for the caption shown second.")
    order_effect: float = Field(default=0.0, description="Log-odds drift from first to last trial.")
    attention_fail_rate: float = Field(
        default=0.05, ge=0, le=1, description="Share of inattentive participants."
    )
    withdraw_rate: float = Field(default=0.05, ge=0, le=1, description="Share who withdraw part-way.")
    incomplete_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share who stop part-way (still active)."
    )
    n_attention_checks: int = Field(default=2, ge=0, description="Attention checks per participant.")
    task_questions: bool = Field(
        default=True, description="Simulate one caption-only task question per image."
    )
    mention_prob_base: float = Field(
        default=0.5, ge=0, le=1, description="P(base caption mentions the detail)."
    )
    task_effect: float = Field(default=0.15, description="Added P(mention) for fine-tuned captions.")
    with_metrics: bool = Field(default=True, description="Also write metrics/metrics.json + per_image.jsonl.")
    metric_coupling: float = Field(default=0.3, description="CIDEr-D difference per unit of image effect.")
    seed: int = Field(default=0, description="Random seed.")
    out: Path = Field(default=Path("study_sim"), description="Output folder (must be new or empty).")
    images: list[str] = Field(
        default_factory=list,
        description="Real image paths to simulate ratings for (e.g. a run's test images, so the analysis "
        "can join real per-image metrics); empty = n_images synthetic names sim/img_NNN.jpg.",
    )

    @model_validator(mode="after")
    def _images_set_count(self) -> SimulationConfig:
        if self.images and len(self.images) < 2:
            raise ValueError(f"images: {len(self.images)} given; a study needs at least 2")
        if self.images:
            object.__setattr__(self, "n_images", len(self.images))
        return self


def image_name(cfg: SimulationConfig, j: int) -> str:
    """Manifest-style image path of simulated image j."""
    return cfg.images[j] if cfg.images else f"sim/img_{j:03d}.jpg"


def draw_ratings(rng: np.random.Generator, eta: np.ndarray, scale_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Ordinal ratings from latent means; returns (ratings 1..scale_max, latent y*)."""
    cuts = np.linspace(-3.0, 3.0, scale_max - 1)
    latent = eta + rng.logistic(size=np.shape(eta))
    return 1 + (latent[..., None] > cuts).sum(axis=-1), latent


def answer_task(
    rng: np.random.Generator, mentioned: bool, attentive: bool, key: AnswerKey
) -> tuple[str, int]:
    """One task answer and its confidence under the module's task model."""
    wrong = str(int(key.answer) + 1)
    if not attentive:
        return str(rng.choice([key.answer, wrong, NOT_STATED])), int(rng.integers(1, 6))
    if mentioned:
        correct = rng.random() < 0.9
        spelled = _NUMBER_WORDS[int(key.answer)].capitalize() + "." if rng.random() < 0.5 else key.answer
        return (spelled if correct else wrong), int(rng.integers(4, 6))
    if rng.random() < 0.7:
        return "The description does not say", int(rng.integers(1, 3))
    return (key.answer if rng.random() < 0.25 else wrong), int(rng.integers(1, 4))


def draw_effects(cfg: SimulationConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random effects of the generative model (see module docstring)."""
    n, m = cfg.n_participants, cfg.n_images
    return {
        "u": rng.normal(0, cfg.participant_sd, n),
        "b": rng.normal(0, cfg.participant_slope_sd, n),
        "v": rng.normal(0, cfg.image_sd, m),
        "c": rng.normal(0, cfg.image_slope_sd, m),
        "attentive": rng.random(n) >= cfg.attention_fail_rate,
        # one uniform per image for both systems: the fine-tuned caption mentions whatever the base one
        # does (same model plus LoRA), so task_effect=0 is an exact null
        "mention": rng.random((m, 1))
        < np.array([cfg.mention_prob_base, cfg.mention_prob_base + cfg.task_effect]),
        "keys": rng.integers(1, 6, m),
    }


def plan_trials(cfg: SimulationConfig, rng: np.random.Generator, pid: int) -> list[tuple[str, int]]:
    """Trial order of one participant: practice, shuffled ratings, task trials, attention checks."""
    order = [("rating", int(j)) for j in rng.permutation(cfg.n_images)]
    if cfg.task_questions:
        order += [("task", int(j)) for j in rng.permutation(cfg.n_images)]
    for k in range(cfg.n_attention_checks):
        order.insert((k + 1) * len(order) // (cfg.n_attention_checks + 1) + k, ("attention", k))
    return [("practice", 0), *order]


def simulate_participant(
    cfg: SimulationConfig, rng: np.random.Generator, fx: dict, pid: int
) -> tuple[list, dict]:
    """All response rows and the participants.csv row of one simulated participant."""
    trials = plan_trials(cfg, rng, pid)
    roll = rng.random()
    status = (
        "withdrawn"
        if roll < cfg.withdraw_rate
        else "active"
        if roll < cfg.withdraw_rate + cfg.incomplete_rate
        else "completed"
    )
    n_done = len(trials) if status == "completed" else int(rng.integers(1, len(trials)))
    attentive, start = bool(fx["attentive"][pid]), SIM_EPOCH + timedelta(hours=pid)
    base = {"study_id": "simulated", "participant_id": f"P{pid:03d}", "participant_status": status}
    rows: list[dict[str, Any]] = []
    for t, (kind, j) in enumerate(trials[:n_done]):
        stamp = {
            "trial_index": t,
            "trial_kind": kind,
            "image": "" if kind == "attention" else image_name(cfg, j),
            "started_at": (start + timedelta(seconds=30 * t)).isoformat(),
            "submitted_at": (start + timedelta(seconds=30 * t + 25)).isoformat(),
            "context": "",  # the simulator has no image contexts or quality flags
            "quality_flags": "",
        }
        rows += [
            base | stamp | r for r in simulate_trial(cfg, rng, fx, pid, kind, j, t / len(trials), attentive)
        ]
    end = (start + timedelta(seconds=30 * n_done)).isoformat()
    person = {
        "participant_id": base["participant_id"],
        "status": status,
        "invited_at": SIM_EPOCH.isoformat(),
        "started_at": start.isoformat(),
        "completed_at": end if status == "completed" else "",
        "withdrawn_at": end if status == "withdrawn" else "",
        "withdraw_reason": "simulated withdrawal" if status == "withdrawn" else "",
        "latin_square_row": pid % 2,
        "completion_code": "SIM" if status == "completed" else "",
        "role": "participant",
    }
    return rows, person


def simulate_trial(cfg, rng, fx, pid: int, kind: str, j: int, order: float, attentive: bool) -> list[dict]:
    """Rows of one trial (without the participant/trial stamp)."""
    blank = {"system": "", "position": "", "value": "", "correct": "", "question_id": "", "response_ms": ""}
    if kind == "attention":
        passed = rng.random() >= (0.02 if attentive else 0.8)
        return [blank | {"item": "attention", "value": "blue" if passed else "red", "correct": bool(passed)}]
    if kind == "task":
        s = (j + pid) % 2  # counterbalanced: each participant answers half the images from each system
        key = AnswerKey(question_id=f"q{j:03d}", kind="number", answer=str(int(fx["keys"][j])))
        value, confidence = answer_task(rng, bool(fx["mention"][j, s]), attentive, key)
        task = blank | {"system": ("base", "finetuned")[s], "position": 1, "question_id": key.question_id}
        return [
            task
            | {
                "item": "task_answer",
                "value": value,
                "correct": score_answer(value, key),
                "response_ms": int(rng.lognormal(9, 0.4)),
            },
            task | {"item": "task_confidence", "value": confidence},
        ]
    ft_position = 1 + (j + pid) % 2
    positions = np.array([3 - ft_position, ft_position])
    eta = (cfg.effect + fx["b"][pid] + fx["c"][j]) * np.array([0, 1]) + fx["u"][pid] + fx["v"][j]
    eta = eta + cfg.position_effect * (positions == 2) + cfg.order_effect * order
    ratings, latent = draw_ratings(rng, eta, cfg.scale_max)
    if not attentive:
        ratings = rng.integers(1, cfg.scale_max + 1, 2)
    rows = [
        blank | {"system": s, "position": int(p), "item": "usefulness", "value": int(r)}
        for s, p, r in zip(("base", "finetuned"), positions, ratings, strict=True)
    ]
    if kind == "rating":
        gap = latent[1] - latent[0]
        choice = "none" if abs(gap) < 0.5 else ("finetuned" if gap > 0 else "base")
        rows.append(
            blank
            | {
                "item": "preference",
                "value": choice,
                "position": "" if choice == "none" else int(positions[int(choice == "finetuned")]),
            }
        )
    return rows


def simulate_study(cfg: SimulationConfig) -> tuple[list[dict], list[dict], dict[str, np.ndarray]]:
    """Draw a whole study.

    Args:
        cfg: the simulation settings.

    Returns:
        (response rows, participant rows, random effects used), rows in the export format.
    """
    rng = np.random.default_rng(cfg.seed)
    fx = draw_effects(cfg, rng)
    responses, participants = [], []
    for pid in range(cfg.n_participants):
        rows, person = simulate_participant(cfg, rng, fx, pid)
        responses += rows
        participants.append(person)
    return responses, participants, fx


def simulate_metrics(cfg: SimulationConfig, fx: dict[str, np.ndarray], out_dir: Path) -> Path:
    """A metrics.json + per_image.jsonl whose CIDEr-D difference tracks each image's true effect.

    CIDEr-D(finetuned) - CIDEr-D(base) = metric_coupling * (effect + c_j) + N(0, 0.05); METEOR is coupled at
    a third of that; BLEU-4 is pure noise, so metric validity has a known answer.
    """
    rng = np.random.default_rng(cfg.seed + 1)
    m = cfg.n_images
    signal = cfg.effect + fx["c"]
    base = {
        "CIDEr-D": rng.uniform(0.3, 0.9, m),
        "METEOR": rng.uniform(0.15, 0.3, m),
        "BLEU-4": rng.uniform(0.1, 0.3, m),
    }
    shift = {
        "CIDEr-D": cfg.metric_coupling * signal + rng.normal(0, 0.05, m),
        "METEOR": cfg.metric_coupling / 3 * signal + rng.normal(0, 0.05, m),
        "BLEU-4": rng.normal(0, 0.05, m),
    }
    rows = []
    for system, scale in (("base", 0.0), ("finetuned", 1.0)):
        lengths = rng.integers(8, 14, m) + int(4 * scale)
        for j in range(m):
            caption = f"simulated {system} caption {j}"
            row = {"system": system, "image": image_name(cfg, j), "caption": caption}
            rows.append(
                row
                | {k: round(float(base[k][j] + scale * shift[k][j]), 4) for k in base}
                | {"length_words": int(lengths[j])}
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "per_image.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    metrics = summarize_simulated_metrics(rows, rng)
    metrics["provenance"] = build_provenance(cfg, simulated=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return out_dir / "metrics.json"


def summarize_bootstrap(x: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Mean with a percentile bootstrap 95% CI over the resample indices `idx` (rounded like evaluate)."""
    boot = x[idx].mean(axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return {
        "value": round(float(x.mean()), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
    }


def compare_simulated(base: np.ndarray, tuned: np.ndarray, metric: str, idx: np.ndarray) -> dict[str, Any]:
    """One metrics.json comparison row (finetuned minus base, paired image bootstrap)."""
    diff = tuned - base
    boot = diff[idx].mean(axis=1)
    p_value = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    summary = summarize_bootstrap(diff, idx)
    return {
        "a": "base",
        "b": "finetuned",
        "metric": metric,
        "diff": summary["value"],
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "p_value": round(p_value, 4),
        "test": f"paired bootstrap (n={len(idx)})",
    }


def summarize_simulated_metrics(
    rows: list[dict], rng: np.random.Generator, n_boot: int = 1000
) -> dict[str, Any]:
    """metrics.json (schemas.md) from per-image rows, with image-bootstrap CIs."""
    names = ("BLEU-4", "METEOR", "CIDEr-D")
    values = {
        s: {k: np.array([r[k] for r in rows if r["system"] == s]) for k in names}
        for s in ("base", "finetuned")
    }
    n_images = len(values["base"]["CIDEr-D"])
    idx = rng.integers(0, n_images, (n_boot, n_images))
    systems = {
        s: {
            "pred": f"simulated/{s}.jsonl",
            "corpus": {k: summarize_bootstrap(v, idx) for k, v in values[s].items()},
            "single_ref": {},
            "accessibility": {},
        }
        for s in values
    }
    comparisons = [compare_simulated(values["base"][k], values["finetuned"][k], k, idx) for k in names]
    missing = {m: f"simulated study: {m} not simulated" for m in ("SPICE", "FGD")}
    return {
        "refs": "simulated",
        "split": "test",
        "n_images": n_images,
        "reference_mode": "multi",
        "simulated": True,
        "missing": missing,
        "systems": systems,
        "comparisons": comparisons,
    }
