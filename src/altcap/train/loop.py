"""The training loop: `fit()` plus the separate eval, save and log steps it calls.

Shape (nanoGPT / litgpt): batch -> forward under autocast -> loss / accumulation -> backward ->
at each accumulation boundary clip, step, schedule, zero_grad -> log every N -> eval / save
every M -> stop. One code path for CPU, one GPU and N GPUs through `accelerate`.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from altcap.train.checkpoint import CheckpointError, TrainState, restore_rng_state, save_checkpoint
from altcap.train.logs import TrainLogger
from altcap.train.next_epoch import NextEpoch
from altcap.train.objectives import OBJECTIVES, Objective


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the checkpoint kept."""


@dataclass
class TrainRun:
    """Everything `fit` needs, built by `run.py` (accelerate-prepared where it matters)."""

    accelerator: Any
    loss_module: torch.nn.Module
    optimizer: Any
    scheduler: Any
    train_loader: Any
    train_sampler: Any
    val_loader: Any | None
    state: TrainState
    logger: TrainLogger
    output_dir: Path
    total_steps: int
    grad_accum_steps: int
    max_grad_norm: float | None
    log_every_n_steps: int
    eval_every_n_steps: int | None
    save_every_n_steps: int
    patience: int | None
    min_delta: float
    save_best: Callable[[], None] | None = None
    resume_rng: dict[str, Any] | None = None
    frozen_modules: list[torch.nn.Module] = field(default_factory=list)
    objective: Objective = OBJECTIVES["cross_entropy"]
    # Extra figures for each logged row (SCST: mean sample reward since the last row).
    step_metrics: Callable[[], dict[str, float]] | None = None
    # (step, loss on the device, lr) of optimizer steps whose loss the host has not read yet.
    unread_losses: list[tuple[int, torch.Tensor, float]] = field(default_factory=list)
    # Fetch each next epoch's first batch during the last step of the one before (loader workers only).
    prefetch_next_epoch: bool = False
    # train.cuda_graphs' router over the language model's passes (its counts go to provenance.json).
    graphed_training: Any = None
    # The loss module's parameters, listed once: walking a PEFT-wrapped model's module tree for
    # them at every clip took 9 ms a step against 1.5 for the list (24-layer SmolVLM2 shape, CPU).
    parameters: list[torch.nn.Parameter] = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = list(self.loss_module.parameters())


def fit(run: TrainRun) -> TrainState:
    """Train until total_steps, the epochs run out, or early stopping; returns the final state.

    Raises:
        TrainingDivergedError: on a NaN/inf loss (the last good checkpoint is kept).
        CheckpointError: when a checkpoint cannot be written (disk full included).
    """
    state = run.state
    set_train_mode(run)
    skip_on_device = optimizer_skips_on_device(run)
    upcoming: NextEpoch | None = None
    froze_gc = False
    try:
        while state.global_step < run.total_steps and not state.stopped_early:
            epoch_batches = upcoming.batches() if upcoming is not None else start_epoch(run)
            upcoming = None
            batches_per_epoch = len(run.train_loader)
            step_loss = torch.zeros((), device=run.accelerator.device)
            for batch in timed_batches(epoch_batches, run.logger):
                apply_pending_rng(run)
                group_size, at_boundary = advance_position(run, batches_per_epoch)
                end_of_epoch = state.batches_in_epoch == batches_per_epoch
                if end_of_epoch and run.prefetch_next_epoch and state.global_step + 1 < run.total_steps:
                    upcoming = NextEpoch.start(run, epoch_batches, state.epoch + 1)
                step_loss += forward_backward(run, batch, group_size, at_boundary)
                if not at_boundary:
                    continue
                take_optimizer_step(run, step_loss, skip_on_device)
                finish_step(run, end_of_epoch)
                if not froze_gc:  # after the first step: the model, optimizer and compiled code exist
                    freeze_long_lived_objects()
                    froze_gc = True
                step_loss = torch.zeros((), device=run.accelerator.device)
                if state.global_step >= run.total_steps or state.stopped_early:
                    break
    finally:
        if froze_gc:  # what training froze is collectable again (notebooks train many times)
            gc.unfreeze()
        if upcoming is not None:  # early stopping (or an error) ended the run at an epoch's end
            upcoming.cancel()
    return state


def freeze_long_lived_objects() -> None:
    """Keep the model, optimizer and compiled code out of Python's full garbage collections.

    After the first step these objects live as long as the run, yet every full collection walks
    all of them (torch.compile adds many), pausing whichever step it lands in; each log row's
    `gc_s` shows such pauses. Objects stay freed by reference counting as usual, and `fit`
    unfreezes them when it ends.

    Only the young generations are collected first: a full collection of a process that imported
    transformers' models walks ~460,000 objects (0.25 s on the CPU machine) to find ~15 unreachable
    ones at this point (tiny SmolVLM2 run, no tensors among them), since automatic collections ran
    during loading. What old garbage remains is frozen with the rest until `fit` ends.
    """
    gc.collect(generation=1)
    gc.freeze()


def start_epoch(run: TrainRun) -> Iterator[Any]:
    """An iterator over the current epoch's batches (the rest of it, when resuming mid-epoch).

    Raises:
        CheckpointError: when a resumed position lies at or past the epoch's end, where the loop
            would otherwise wait forever for a batch that never comes.
    """
    state = run.state
    if state.batches_in_epoch and state.batches_in_epoch >= len(run.train_loader):
        raise CheckpointError(
            f"resume position (batch {state.batches_in_epoch} of epoch {state.epoch}) lies past the "
            f"{len(run.train_loader)} batches an epoch of this data has: the checkpoint in "
            f"{run.output_dir} was written on other data; use another output_dir to start afresh"
        )
    run.train_sampler.select_epoch(state.epoch)
    loader = run.train_loader
    if state.batches_in_epoch:
        loader = run.accelerator.skip_first_batches(run.train_loader, state.batches_in_epoch)
    return iter(loader)


def advance_position(run: TrainRun, batches_per_epoch: int) -> tuple[int, bool]:
    """Count a micro-batch into the epoch; returns (micro-batches in its accumulation group,
    whether it ends the group). An epoch's last group may be shorter than grad_accum_steps."""
    state = run.state
    group_start = state.batches_in_epoch - state.batches_in_epoch % run.grad_accum_steps
    group_size = min(run.grad_accum_steps, batches_per_epoch - group_start)
    state.batches_in_epoch += 1
    return group_size, state.batches_in_epoch - group_start == group_size


def forward_backward(
    run: TrainRun, batch: dict[str, Any], group_size: int, at_boundary: bool
) -> torch.Tensor:
    """Loss and gradients of one micro-batch (gradients synced across processes only at the
    group's end); returns the detached loss share, still on the device."""
    acc = run.accelerator
    with acc.no_sync(run.loss_module) if not at_boundary else nullcontext():
        with acc.autocast():
            loss = compute_loss(run, batch) / group_size
        acc.backward(loss)
    run.state.samples_seen += len(batch["examples"]) * acc.num_processes  # every process's share
    run.logger.count_batch(
        len(batch["examples"]), batch.get("caption_tokens", 0), batch.get("padded_tokens", 0)
    )
    return loss.detach()


def take_optimizer_step(run: TrainRun, step_loss: torch.Tensor, skip_on_device: bool) -> None:
    """Queue the step's loss for reading, step the optimizer (never on a NaN loss), count the step."""
    step_loss = run.accelerator.reduce(step_loss, "mean")
    lr = run.scheduler.get_last_lr()[0]  # the rate this step uses, before the schedule moves on
    run.unread_losses.append((run.state.global_step + 1, step_loss, lr))
    if skip_on_device:
        optimizer_step(run, skip_if_nonfinite=step_loss)
    else:
        check_finite(run, step_loss)
        optimizer_step(run)
    run.state.global_step += 1
    run.logger.advance()


def timed_batches(batches: Iterator[Any], logger: TrainLogger) -> Iterator[Any]:
    """The batches of an iterator, with the time the loop waits for each counted in the log."""
    while True:
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        logger.count_data_wait(time.perf_counter() - start)
        yield batch


def apply_pending_rng(run: TrainRun) -> None:
    """Restore a resumed run's RNG right before its first batch is used.

    Not earlier: building the (skipping) loader iterator must not shift the RNG stream, or dropout
    masks after a resume would differ from those of an uninterrupted run.
    """
    if run.resume_rng is not None:
        restore_rng_state(run.resume_rng)
        run.resume_rng = None


def finish_step(run: TrainRun, end_of_epoch: bool) -> None:
    """After an optimizer step: epoch bookkeeping, eval, early stopping, log and save, in that order.

    Steps that do none of these leave their loss on the GPU, so the host queues the next step
    without waiting for this one to finish.
    """
    state = run.state
    last_step = state.global_step >= run.total_steps
    eval_now = run.val_loader is not None and (
        (run.eval_every_n_steps is None and (end_of_epoch or last_step))
        or (
            run.eval_every_n_steps is not None
            and (state.global_step % run.eval_every_n_steps == 0 or last_step)
        )
    )
    log_now = eval_now or end_of_epoch or last_step or state.global_step % run.log_every_n_steps == 0
    save_now = state.global_step % run.save_every_n_steps == 0 or last_step
    if not (log_now or save_now):
        return
    row = read_losses(run)
    if eval_now:
        row["val_loss"] = evaluate(run)
        update_early_stopping(run, row["val_loss"])
    if end_of_epoch or last_step:
        close_epoch(run, row.get("val_loss"), end_of_epoch)
    if log_now:
        if run.step_metrics is not None:
            row.update(run.step_metrics())
        run.logger.write_row(row)
    if save_now or state.stopped_early:
        save(run)


def read_losses(run: TrainRun) -> dict[str, Any]:
    """Read the losses of the steps since the last read (one sync), check them, and return the
    log row of the latest step.

    Raises:
        TrainingDivergedError: naming the first step whose loss was NaN or infinite.
    """
    state, unread = run.state, run.unread_losses
    values = torch.stack([loss for _, loss, _ in unread]).tolist()
    for (step, _, _), value in zip(unread, values, strict=True):
        if not math.isfinite(value):
            raise_diverged(run, value, step)
        state.epoch_loss_sum += value
        state.epoch_loss_steps += 1
    step, _, lr = unread[-1]
    unread.clear()
    return {"step": step, "epoch": state.epoch, "loss": values[-1], "lr": lr}


def close_epoch(run: TrainRun, val_loss: float | None, end_of_epoch: bool) -> None:
    """Record the epoch's mean train loss (and val loss) for the curves; advance the epoch counter."""
    state = run.state
    if state.epoch_loss_steps:
        state.epoch_train_losses.append(state.epoch_loss_sum / state.epoch_loss_steps)
        state.epoch_val_losses.append(val_loss)
    state.epoch_loss_sum, state.epoch_loss_steps = 0.0, 0
    if end_of_epoch:
        state.epoch += 1
        state.batches_in_epoch = 0


def compute_loss(run: TrainRun, batch: dict[str, Any]) -> torch.Tensor:
    """The objective's loss of one batch (cross-entropy: from cached features when a cache is in use)."""
    return run.objective.compute_loss(run.loss_module, batch)


def optimizer_skips_on_device(run: TrainRun) -> bool:
    """Whether the optimizer can skip a step with a NaN/inf loss on the GPU, without a host sync.

    Fused AdamW reads `found_inf` as GradScaler's step does. Not under fp16, whose GradScaler sets
    and clears that attribute itself.
    """
    scaler = getattr(run.accelerator, "scaler", None)
    return bool(getattr(torch_optimizer(run), "defaults", {}).get("fused")) and scaler is None


def torch_optimizer(run: TrainRun) -> Any:
    """The torch optimizer inside accelerate's wrapper (its attributes are the ones its step reads)."""
    return getattr(run.optimizer, "optimizer", run.optimizer)


def optimizer_step(run: TrainRun, skip_if_nonfinite: torch.Tensor | None = None) -> None:
    """Clip, step, schedule, zero_grad. With `skip_if_nonfinite`, the fused optimizer leaves the
    weights and its state untouched when that loss is NaN/inf; `read_losses` raises later."""
    if run.max_grad_norm is not None:
        run.accelerator.clip_grad_norm_(run.parameters, run.max_grad_norm)
    inner = torch_optimizer(run)
    if skip_if_nonfinite is not None:
        inner.found_inf = (~torch.isfinite(skip_if_nonfinite)).float()
    try:
        run.optimizer.step()
    finally:
        if skip_if_nonfinite is not None:
            del inner.found_inf
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)


def check_finite(run: TrainRun, loss: torch.Tensor) -> None:
    """Stop on NaN/inf before the optimizer applies it, for optimizers that cannot skip on the GPU."""
    # One host-device sync per optimizer step: the price of never stepping on a NaN.
    value = loss.item()
    if not math.isfinite(value):
        raise_diverged(run, value, run.state.global_step + 1)


def raise_diverged(run: TrainRun, value: float, step: int) -> None:
    """Stop with the step and the checkpoint that is kept (the optimizer never applied this loss)."""
    from altcap.train.checkpoint import find_latest_checkpoint

    last = find_latest_checkpoint(run.output_dir)
    kept = f"last good checkpoint kept at {last}" if last else "no checkpoint was written yet"
    raise TrainingDivergedError(
        f"loss is {value} at optimizer step {step} (epoch {run.state.epoch}); "
        f"{kept}. Lower optim.lr, use precision=fp32 or bf16 instead of fp16, or check the data."
    )


@torch.no_grad()
def evaluate(run: TrainRun) -> float:
    """Mean validation loss over the validation split (all processes)."""
    run.loss_module.eval()
    total = torch.zeros((), device=run.accelerator.device)
    count = torch.zeros((), device=run.accelerator.device)
    for batch in run.val_loader:
        with run.accelerator.autocast():
            loss = compute_loss(run, batch)
        total += loss.float() * len(batch["examples"])
        count += len(batch["examples"])
    set_train_mode(run)
    total, count = run.accelerator.reduce(total, "sum"), run.accelerator.reduce(count, "sum")
    return (total / count).item() if count.item() else math.nan


def update_early_stopping(run: TrainRun, val_loss: float) -> None:
    """Track the best val loss, save the best adapter, and stop after `patience` evals without gain."""
    state = run.state
    if state.best_val_loss is None or val_loss < state.best_val_loss - run.min_delta:
        state.best_val_loss = val_loss
        state.evals_without_improvement = 0
        if run.save_best is not None:
            run.save_best()
        return
    state.evals_without_improvement += 1
    if run.patience is not None and state.evals_without_improvement >= run.patience:
        state.stopped_early = True


def save(run: TrainRun) -> None:
    """Write a resumable checkpoint (main process) and wait for every process."""
    acc = run.accelerator
    if acc.is_main_process:
        model = acc.unwrap_model(run.loss_module)
        save_checkpoint(run.output_dir, model, run.optimizer, run.scheduler, run.state)
    acc.wait_for_everyone()


def set_train_mode(run: TrainRun) -> None:
    """Train mode, except the frozen modules: no dropout there, so cached features stay exact."""
    run.loss_module.train()
    for module in run.frozen_modules:
        module.eval()
