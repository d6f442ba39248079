"""Training objectives: the one table from `TrainConfig.objective` to the code that runs it.

Everything that differs between objectives is read from its `Objective` entry here: how examples
are formed (validate), the loss module and collate (run), the loss of a batch (loop), what is
refused with it (validate) and which curves the run folder gets (run). To add an objective, write
its module (like `cross_entropy.py` or `scst.py`), add an entry to `OBJECTIVES`, and add its name to
`TrainConfig.objective`'s Literal (a test keeps the two the same).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from altcap.train.checkpoint import TrainState
from altcap.train.config import TrainConfig
from altcap.train.cross_entropy import build_caption_loss, compute_caption_loss, plot_caption_loss
from altcap.train.scst import build_scst_loss, compute_scst_loss, plot_scst_curves

# (cfg, plan, model, processor, feature cache or None) -> (loss module, collate function)
BuildLoss = Callable[[TrainConfig, Any, Any, Any, Any], tuple[torch.nn.Module, Callable]]


@dataclass(frozen=True)
class Objective:
    """What one training objective runs, and what it cannot be combined with."""

    name: str
    # One example per image with all its references (else one per reference caption).
    one_example_per_image: bool
    # Its step runs the family's generate from pixels: no feature cache, no torch.compile.
    samples_from_pixels: bool
    build_loss: BuildLoss
    compute_loss: Callable[[torch.nn.Module, dict[str, Any]], torch.Tensor]
    # (final state, run folder) -> the figure written into the run folder
    plot_curves: Callable[[TrainState, Path], Path]


OBJECTIVES: dict[str, Objective] = {
    "cross_entropy": Objective(
        name="cross_entropy",
        one_example_per_image=False,
        samples_from_pixels=False,
        build_loss=build_caption_loss,
        compute_loss=compute_caption_loss,
        plot_curves=plot_caption_loss,
    ),
    "scst": Objective(
        name="scst",
        one_example_per_image=True,
        samples_from_pixels=True,
        build_loss=build_scst_loss,
        compute_loss=compute_scst_loss,
        plot_curves=plot_scst_curves,
    ),
}


def get_objective(name: str) -> Objective:
    """The registered objective called `name`.

    Args:
        name: `TrainConfig.objective`.

    Returns:
        Its `Objective`.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"objective={name!r} is not known; valid objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def check_objective_settings(cfg: TrainConfig) -> list[str]:
    """Settings the configured objective cannot run with, one problem (and its fix) per line.

    Args:
        cfg: the training config.

    Returns:
        The problems; empty when none.
    """
    objective = get_objective(cfg.objective)
    problems = []
    if objective.samples_from_pixels and cfg.compile:
        problems.append(
            f"compile=true with objective={objective.name}: its step runs generate, which "
            "torch.compile of the loss module cannot capture; set compile=false"
        )
    if objective.samples_from_pixels and cfg.feature_cache.enabled:
        problems.append(
            f"objective={objective.name} samples captions from pixels, so its outputs cannot be cached; "
            "set feature_cache.enabled=false (or leave it unset)"
        )
    return problems
