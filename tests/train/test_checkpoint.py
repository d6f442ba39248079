import errno
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import make_config, write_manifest

from altcap.train import checkpoint
from altcap.train.checkpoint import (
    CheckpointError,
    TrainState,
    capture_rng_state,
    find_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from altcap.train.loop import TrainingDivergedError
from altcap.train.run import run_train


def test_rng_state_round_trip() -> None:
    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def _tiny_training_objects():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def test_save_keeps_only_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    model, optimizer, scheduler = _tiny_training_objects()
    save_checkpoint(tmp_path, model, optimizer, scheduler, TrainState(global_step=2))
    save_checkpoint(tmp_path, model, optimizer, scheduler, TrainState(global_step=4))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-4"]
    assert json.loads((tmp_path / "checkpoints" / "step-4" / "state.json").read_text())["global_step"] == 4


def test_disk_full_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer, scheduler = _tiny_training_objects()
    good = save_checkpoint(tmp_path, model, optimizer, scheduler, TrainState(global_step=2))

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(CheckpointError, match=r"disk full while writing .*step-4.*last good checkpoint"):
        save_checkpoint(tmp_path, model, optimizer, scheduler, TrainState(global_step=4))
    assert find_latest_checkpoint(tmp_path) == good
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-2"]


@pytest.mark.slow
def test_disk_full_during_training_is_a_clear_error(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=0)
    cfg = make_config(tiny_model("blip"), manifest, tmp_path / "run", "save_every_n_steps=1")
    real_save = checkpoint.save_file
    calls = []

    def save_then_fill_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", save_then_fill_disk)
    with pytest.raises(CheckpointError, match="disk full") as err:
        run_train(cfg)
    assert "step-2" in str(err.value) and find_latest_checkpoint(tmp_path / "run").name == "step-2"


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from altcap.train import loop

    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=0)
    cfg = make_config(tiny_model("blip"), manifest, tmp_path / "run", "save_every_n_steps=1")
    real_loss = loop.compute_loss
    calls = []

    def loss_turning_nan(run, batch):
        calls.append(1)
        loss = real_loss(run, batch)
        return loss * float("nan") if len(calls) > 4 else loss  # micro-batch 5 = optimizer step 3

    monkeypatch.setattr(loop, "compute_loss", loss_turning_nan)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at optimizer step 3 .*kept at .*step-2"):
        run_train(cfg)
    assert find_latest_checkpoint(tmp_path / "run").name == "step-2"


@pytest.mark.slow
def test_fused_optimizer_skips_a_nan_step_on_the_device_and_the_error_names_it(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fused AdamW the loss is read only at log rows; the NaN step must still never be applied."""
    from altcap.train import loop

    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=0)
    # 2 optimizer steps per epoch; rows and checkpoints only at epoch ends (steps 2 and 4).
    sets = ("optim.fused=true", "log_every_n_steps=100", "save_every_n_steps=2", "schedule.warmup_steps=0")
    cfg = make_config(tiny_model("blip"), manifest, tmp_path / "run", *sets)
    real_loss, real_step = loop.compute_loss, loop.optimizer_step
    calls, applied, reads = [], [], []

    def loss_nan_at_step_3(run, batch):
        calls.append(1)
        loss = real_loss(run, batch)
        return loss * float("nan") if len(calls) in (5, 6) else loss

    def step_and_record(run, skip_if_nonfinite=None):
        trainable = [p for p in run.loss_module.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in trainable]
        real_step(run, skip_if_nonfinite)
        applied.append(any(not torch.equal(b, p) for b, p in zip(before, trainable, strict=True)))

    real_read = loop.read_losses
    monkeypatch.setattr(loop, "compute_loss", loss_nan_at_step_3)
    monkeypatch.setattr(loop, "optimizer_step", step_and_record)
    monkeypatch.setattr(loop, "read_losses", lambda run: reads.append(1) or real_read(run))
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at optimizer step 3 .*kept at .*step-2"):
        run_train(cfg)
    # Step 3's NaN was skipped on the device, step 4 trained on, and the host read losses twice
    # (the two epoch ends), not once per step; the error came at step 4's read, before its save.
    assert applied == [True, True, False, True] and len(reads) == 2
    assert find_latest_checkpoint(tmp_path / "run").name == "step-2"
