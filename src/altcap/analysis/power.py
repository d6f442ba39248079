"""Simulation-based power of the pre-registered primary test (issue #7).

Power = share of simulated studies (the model in `altcap.analysis.simulate`) in which the one-sided
Wilcoxon signed-rank test on per-participant mean usefulness gains, after the same exclusion rules
as the real analysis, gives p < alpha.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field
from rich.progress import track
from scipy import stats

from altcap.analysis.simulate import SimulationConfig, simulate_study
from altcap.analysis.stats import compute_participant_diffs, compute_wilson, find_exclusions
from altcap.config import StageConfig


class PowerConfig(StageConfig):
    """`altcap study power` settings; the simulation model's other parameters keep their defaults."""

    n_participants: int = Field(default=30, ge=2, description="Planned number of participants.")
    effect: float = Field(
        default=0.5, description="Minimum effect of interest (log-odds shift, see simulate)."
    )
    sims: int = Field(default=500, ge=1, description="Simulated studies.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="One-sided significance level.")
    n_images: int = Field(default=20, ge=2, description="Images rated per participant.")
    min_completion: float = Field(default=0.8, ge=0, le=1, description="Exclusion: share of trials needed.")
    max_attention_failures: int = Field(
        default=0, ge=0, description="Exclusion: attention checks allowed to fail."
    )
    seed: int = Field(default=0, description="Seed of the first simulated study (study k uses seed + k).")
    out: Path | None = Field(default=None, description="Optional power.json to write.")


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """Simulated rows as the all-string table `load_export` would read from responses.csv."""
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        frame[column] = frame[column].map(lambda v: str(v).lower() if isinstance(v, bool) else str(v))
    frame["trial_index"] = pd.to_numeric(frame["trial_index"])
    return frame


def compute_simulated_p_value(
    sim: SimulationConfig, min_completion: float, max_attention_failures: int
) -> float:
    """p-value of the primary test on one simulated study (1.0 when it cannot be computed)."""
    rows, people, _ = simulate_study(sim)
    responses, participants = rows_to_frame(rows), pd.DataFrame(people).astype(str)
    excluded = {
        e["participant_id"]
        for e in find_exclusions(responses, participants, min_completion, max_attention_failures)
    }
    diffs = compute_participant_diffs(responses[~responses["participant_id"].isin(excluded)], "usefulness")
    if len(diffs) < 2 or np.all(diffs.to_numpy() == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(diffs.to_numpy(), alternative="greater").pvalue)


def run_power(cfg: PowerConfig, show_progress: bool = True) -> dict:
    """Estimate power by simulation.

    Args:
        cfg: planned n, minimum effect of interest, number of simulations, alpha.
        show_progress: show a progress bar.

    Returns:
        {"power": {k, n, share, ci_low, ci_high}, "p_values": [...], "config": ...}.
    """
    p_values = []
    seeds = range(cfg.seed, cfg.seed + cfg.sims)
    for seed in track(seeds, description="simulating studies", disable=not show_progress):
        sim = SimulationConfig(
            n_participants=cfg.n_participants,
            effect=cfg.effect,
            n_images=cfg.n_images,
            task_questions=False,
            with_metrics=False,
            seed=seed,
        )
        p_values.append(compute_simulated_p_value(sim, cfg.min_completion, cfg.max_attention_failures))
    hits = int(sum(p < cfg.alpha for p in p_values))
    return {
        "power": compute_wilson(hits, cfg.sims),
        "alpha": cfg.alpha,
        "p_values": p_values,
        "config": cfg.model_dump(mode="json"),
        "model": "altcap.analysis.simulate (cumulative logit, crossed participant/image random effects)",
    }
