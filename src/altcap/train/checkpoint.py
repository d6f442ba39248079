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
from safetensors import SafetensorError
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
    # The training data the position counts in (`describe_training_data`); a resume on other data
    # would skip to a batch that is not there (None: not recorded).
    data: dict[str, Any] | None = None


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
    # safetensors reports its own write errors (a full disk included) as SafetensorError, not OSError.
    except (OSError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        needed = estimate_checkpoint_bytes(model, optimizer)
        raise CheckpointError(describe_save_failure(output_dir, final, err, needed)) from err
    for old in list_checkpoints(output_dir):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def estimate_checkpoint_bytes(model: Any, optimizer: Any) -> int:
    """Bytes one checkpoint takes: the trainable weights plus every optimizer state tensor."""
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    states = getattr(optimizer, "state", {}).values()
    moments = sum(
        t.numel() * t.element_size() for s in states for t in s.values() if isinstance(t, torch.Tensor)
    )
    return params + moments


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    return "os error 28" in str(err).lower() or "no space left" in str(err).lower()


def describe_save_failure(output_dir: Path, target: Path, err: BaseException, needed_bytes: int = 0) -> str:
    """A user-facing message for a failed checkpoint write: what was kept, and the space it needs."""
    last = find_latest_checkpoint(output_dir)
    kept = f"the last good checkpoint is kept at {last}" if last else "no earlier checkpoint exists"
    if not _is_disk_full(err):
        return f"could not write checkpoint {target}: {err}; {kept}."
    free = shutil.disk_usage(output_dir).free
    return (
        f"disk full while writing checkpoint {target}: {err}; {kept}. A checkpoint needs about "
        f"{_megabytes(needed_bytes)} (the new one is complete before the old one is deleted) and "
        f"{_megabytes(free)} are free on that disk: free space and rerun to resume."
    )


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


def load_checkpoint(
    folder: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    global_batch_size: int | None = None,
    data: dict[str, Any] | None = None,
) -> TrainState:
    """Restore trainable weights, optimizer and scheduler from a checkpoint; RNG is returned, not applied.

    Args:
        folder: a checkpoint folder from `save_checkpoint`.
        model: the (unwrapped) model, already with the same adapter layout.
        optimizer: optimizer to restore.
        scheduler: LR scheduler to restore.
        global_batch_size: batch_size x processes of the resuming run; checked against the
            checkpoint's (None = no check).
        data: the resuming run's `describe_training_data`; checked against the checkpoint's.

    Returns:
        The saved TrainState (apply `read_rng_state(folder)` right before the next step).

    Raises:
        CheckpointError: if the checkpoint's weights do not fit the model, or its global batch
            or training data differ from this run's.
    """
    state = TrainState(**json.loads((folder / "state.json").read_text(encoding="utf-8")))
    check_global_batch(folder, state, global_batch_size)
    check_training_data(folder, state, data)
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
    state.data = data or state.data
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


def describe_training_data(manifest: Path, train_examples: int, batches_per_epoch: int) -> dict[str, Any]:
    """What a checkpoint's data position counts in: the manifest's content hash and the sizes.

    Args:
        manifest: the training manifest.
        train_examples: training examples (one per record and caption).
        batches_per_epoch: micro-batches of the global batch per epoch.

    Returns:
        A JSON-ready dict stored in `TrainState.data`.
    """
    from altcap.provenance import sha256_file

    return {
        "manifest": str(manifest),
        "manifest_sha256": sha256_file(manifest),
        "train_examples": train_examples,
        "batches_per_epoch": batches_per_epoch,
    }


def check_training_data(folder: Path, state: TrainState, data: dict[str, Any] | None) -> None:
    """Refuse a resume on other training data, saying what differs.

    Its position (batch N of epoch E) would point past the end of a smaller dataset, or at other
    examples in a changed one.
    """
    saved = state.data
    if data is None or saved is None:
        return
    labels = {
        "manifest_sha256": "manifest content (sha256)",
        "train_examples": "training examples",
        "batches_per_epoch": "batches per epoch",
    }
    differences = [
        f"{label}: {str(saved.get(key))[:12]} then, {str(data[key])[:12]} now"
        for key, label in labels.items()
        if saved.get(key) != data[key]
    ]
    if not differences:
        return
    raise CheckpointError(
        f"{folder}: checkpoint was written while training on other data ({saved.get('manifest')}); "
        f"{'; '.join(differences)}. Resume with the manifest it started with, or use another "
        "output_dir to start afresh on this one."
    )


def read_rng_state(folder: Path) -> dict[str, Any]:
    """The RNG states saved in a checkpoint."""
    return torch.load(folder / "rng.pt", weights_only=False)
