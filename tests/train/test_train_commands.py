"""`altcap train` on the situations a user meets: resuming on changed data, a full disk (#27 items 3, 4)."""

from __future__ import annotations

import errno
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors import SafetensorError
from train_fixtures import make_config, write_manifest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.config import dump_config
from altcap.train import checkpoint
from altcap.train.checkpoint import find_latest_checkpoint

runner = CliRunner()


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Turn a hang (the bug this guards against) into a failure after 120 s."""

    def on_alarm(*_: object) -> None:
        raise TimeoutError("altcap train hung")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def write_train_yaml(tmp_path: Path, model: Path, manifest: Path, *sets: str) -> Path:
    cfg = make_config(model, manifest, tmp_path / "run", "grad_accum_steps=1", "epochs=1", *sets)
    path = tmp_path / f"train-{len(list(tmp_path.glob('train-*.yaml')))}.yaml"
    dump_config(cfg, path)
    return path


@pytest.mark.slow
def test_resume_on_a_smaller_manifest_says_what_differs_and_never_hangs(
    tiny_model, tmp_path: Path, no_hang: None
) -> None:
    model = tiny_model("blip")
    big = write_manifest(tmp_path / "big", n_train=8, n_val=0)
    first = write_train_yaml(tmp_path, model, big, "max_steps=3", "save_every_n_steps=3")
    result = runner.invoke(app, ["train", str(first)])
    assert result.exit_code == 0, result.output
    assert find_latest_checkpoint(tmp_path / "run").name == "step-3"  # batch 3 of 4 in epoch 0

    small = write_manifest(tmp_path / "small", n_train=4, n_val=0)  # 2 batches an epoch
    second = write_train_yaml(tmp_path, model, small, "max_steps=6", "epochs=3", "resume=true")
    result = runner.invoke(app, ["train", str(second)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "other data" in text and "training examples: 8 then, 4 now" in text
    assert "batches per epoch: 4 then, 2 now" in text and "manifest content" in text


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        SafetensorError(
            'Error while serializing: IoError(Os { code: 28, message: "No space left on device" })'
        ),
    ],
)
def test_disk_full_during_a_checkpoint_is_one_clear_error_keeping_the_last_good_one(
    error: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 64)).sum().backward()
    optimizer.step()  # Adam moments exist, as in a real checkpoint
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    good = checkpoint.save_checkpoint(
        tmp_path, model, optimizer, scheduler, checkpoint.TrainState(global_step=2)
    )

    def full_disk(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.save_checkpoint(
            tmp_path, model, optimizer, scheduler, checkpoint.TrainState(global_step=4)
        )
    message = str(caught.value)
    assert "disk full" in message and str(good) in message
    assert "needs about" in message and "free" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-2"]  # no .tmp-step-4


@pytest.mark.slow
def test_train_draws_one_bar_by_default_and_none_under_quiet(tiny_model, tmp_path: Path) -> None:
    """#27 item 16: one bar with a rate (the feature cache's own bar waits for -v); -q: nothing."""
    from cli_bars import assert_one_bar_with_rate, assert_quiet, invoke_quiet

    model, manifest = tiny_model("blip"), write_manifest(tmp_path / "data", n_train=4, n_val=0)
    shown_yaml = write_train_yaml(tmp_path / "a", model, manifest, "max_steps=2")
    shown = runner.invoke(app, ["train", str(shown_yaml)])
    assert shown.exit_code == 0, shown.output
    assert_one_bar_with_rate(shown.stderr, "train")
    quiet_yaml = write_train_yaml(tmp_path / "b", model, manifest, "max_steps=2")
    quiet = invoke_quiet(app, ["train", str(quiet_yaml)])
    assert quiet.exit_code == 0, quiet.output
    assert_quiet(quiet.stdout, quiet.stderr)
