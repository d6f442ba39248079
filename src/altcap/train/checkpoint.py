"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG and data-order state.

Hand-written rather than `Accelerator.save_state`, because that writes the full model (tens of GB
for a 7B base) when only the adapter and a few projector weights change. Each checkpoint is
written to a temp folder and renamed into place, so a crash or a full disk never leaves a
half-written checkpoint where resume would look, and the previous good one is kept until the new
one is complete.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS_DIR = "checkpoints"
_PREFIX = "step-"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the folder and the fix."""


@dataclass
class TrainState:
    """Where training stands; everything besides tensors that exact resume needs."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    samples_seen: int = 0
    seed: int = 0
    best_val_loss: float | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    epoch_train_losses: list[float] = field(default_factory=list)
    epoch_val_losses: list[float | None] = field(default_factory=list)
    # batches_in_epoch counts micro-batches of this many examples over all processes; a resume
    # is only exact with the same number, whatever the process count (None: not recorded).
    global_batch_size: int | None = None


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter that requires grad (LoRA weights and any trainable projector), on CPU."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back where `capture_rng_state` found it."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in a run folder, oldest first (temp folders are never listed)."""
    root = output_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(_PREFIX) and (p / "state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.removeprefix(_PREFIX)))


def find_latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def _write_checkpoint_files(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, state: TrainState
) -> None:
    save_file(trainable_state_dict(model), str(folder / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    torch.save(capture_rng_state(), folder / "rng.pt")
    # state.json last: its presence is what marks a checkpoint complete.
    (folder / "state.json").write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")


def save_checkpoint(output_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: TrainState) -> Path:
    """Write a checkpoint atomically and delete older ones only after it is complete.

    Args:
        output_dir: run folder; checkpoints go to `<output_dir>/checkpoints/step-N`.
        model: the (unwrapped) model whose trainable parameters are saved.
        optimizer: optimizer to save.
        scheduler: LR scheduler to save.
        state: training position.

    Returns:
        The checkpoint folder.

    Raises:
        CheckpointError: on a write failure (disk full included); the last good checkpoint is kept.
    """
    root = output_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{state.global_step}"
    tmp = root / f".tmp-{_PREFIX}{state.global_step}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_checkpoint_files(tmp, model, optimizer, scheduler, state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(describe_save_failure(output_dir, final, err)) from err
    for old in list_checkpoints(output_dir):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def describe_save_failure(output_dir: Path, target: Path, err: OSError) -> str:
    """A user-facing message for a failed checkpoint write that says what was kept."""
    last = find_latest_checkpoint(output_dir)
    kept = f"the last good checkpoint is kept at {last}" if last else "no earlier checkpoint exists"
    if err.errno == errno.ENOSPC:
        return f"disk full while writing checkpoint {target}: {err}; {kept}. Free space and rerun to resume."
    return f"could not write checkpoint {target}: {err}; {kept}."


def load_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, global_batch_size: int | None = None
) -> TrainState:
    """Restore trainable weights, optimizer and scheduler from a checkpoint; RNG is returned, not applied.

    Args:
        folder: a checkpoint folder from `save_checkpoint`.
        model: the (unwrapped) model, already with the same adapter layout.
        optimizer: optimizer to restore.
        scheduler: LR scheduler to restore.
        global_batch_size: batch_size x processes of the resuming run; checked against the
            checkpoint's (None = no check).

    Returns:
        The saved TrainState (apply `read_rng_state(folder)` right before the next step).

    Raises:
        CheckpointError: if the checkpoint's weights do not fit the model, or its global batch
            differs from `global_batch_size`.
    """
    state = TrainState(**json.loads((folder / "state.json").read_text(encoding="utf-8")))
    check_global_batch(folder, state, global_batch_size)
    weights = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = sorted(set(weights) - set(params))
    missing += sorted(n for n in set(weights) & set(params) if weights[n].shape != params[n].shape)
    if missing:
        raise CheckpointError(
            f"{folder}: checkpoint has {len(missing)} weights the model lacks or shapes differently (e.g. "
            f"{missing[0]}); "
            "it was made with a different model or LoRA config. Use another output_dir or delete it."
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
    if global_batch_size is not None:
        state.global_batch_size = global_batch_size
    return state


def check_global_batch(folder: Path, state: TrainState, global_batch_size: int | None) -> None:
    """Refuse a resume whose global batch differs: its data position would point elsewhere.

    The position is kept as micro-batches of the global batch (the same count on 1 process x
    batch 4 as on 2 x 2), so any process count resumes exactly as long as the product stays.
    """
    saved = state.global_batch_size
    if global_batch_size is None or saved is None or saved == global_batch_size:
        return
    raise CheckpointError(
        f"{folder}: checkpoint was written with a global batch of {saved} examples (batch_size x processes) "
        f"but this run has {global_batch_size}; set batch_size so that batch_size x processes = {saved} "
        "to resume, or use another output_dir to start afresh."
    )


def read_rng_state(folder: Path) -> dict[str, Any]:
    """The RNG states saved in a checkpoint."""
    return torch.load(folder / "rng.pt", weights_only=False)
