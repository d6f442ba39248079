"""2-process DDP on CPU (gloo) matches 1 process with the same global batch, and resumes across
process counts (issue #10).

Every run is a fresh `python -m altcap.cli train` (under torchrun for 2 processes), so accelerate's
process-wide state never leaks between runs. Why the curves can match to float rounding:
- same global batch: accelerate's batch-sampler shard gives process k the k-th micro-batch of each
  group of 2 consecutive ones, so 2 x batch 2 sees exactly the 4 examples 1 x batch 4 sees;
- every caption has the same token count, so the mean of the per-process token-mean losses (what
  DDP's gradient averaging optimises) equals the token mean over the global batch;
- lora.dropout=0 and fp32, so no random masks and no autocast rounding;
- one shared feature cache, so both runs read byte-identical frozen features.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import make_config, read_log, write_manifest

from altcap.config import dump_config
from altcap.train.checkpoint import (
    CheckpointError,
    TrainState,
    find_latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

# What separates the runs is only fp32 summation order (a 4-row batch vs two 2-row batches whose
# gradients gloo averages): ~1e-7 relative per step here, so 1e-5 leaves room for a few steps of
# Adam drift while any change of batch content (shifting the loss by >1e-3) still fails.
LOSS_TOL = 1e-5
WEIGHT_TOL = 1e-5

# Same token count (20) under the tiny BLIP tokenizer; see the module docstring for why.
EQUAL_LENGTH_CAPTIONS = (
    "a black and white dog is jumping over a fence",
    "a woman sits on a bench and reads a book",
    "the sign says open in large white letters",
)

# Trains like `altcap train CONFIG`, but stops every process right after the checkpoint of step
# argv[2] is on disk: a clean mid-epoch interruption that works under torchrun too.
STOPPER = """
import sys
from pathlib import Path
from altcap.config import load_config
from altcap.train import loop
from altcap.train.config import TrainConfig
from altcap.train.run import run_train

class Stop(Exception):
    pass

real_save = loop.save
stop_after_step = int(sys.argv[2])

def save_then_stop(run):
    real_save(run)
    if run.state.global_step == stop_after_step:
        raise Stop

loop.save = save_then_stop
try:
    run_train(load_config(TrainConfig, Path(sys.argv[1])))
except Stop:
    pass
"""

# 8 examples, global batch 4: 2 optimizer steps per epoch, 6 in all; step 3 is mid-epoch.
SETS = (
    "epochs=3",
    "grad_accum_steps=1",
    "save_every_n_steps=3",
    "lora.r=4",
    "lora.dropout=0",
    "precision=fp32",
    "optim.lr=2e-2",
)
STOP_STEP = 3


def write_equal_length_manifest(root: Path) -> Path:
    """8 train + 2 val images, each with one caption of the same token length."""
    manifest = write_manifest(root, n_train=8, n_val=2)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    for index, row in enumerate(rows):
        row["captions"] = [EQUAL_LENGTH_CAPTIONS[index % len(EQUAL_LENGTH_CAPTIONS)]]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


def write_run_config(tmp_path: Path, model_dir: Path, manifest: Path, name: str, batch_size: int) -> Path:
    """A YAML config for run `name`; all runs share one feature cache (see module docstring)."""
    cfg = make_config(model_dir, manifest, tmp_path / name, *SETS, f"batch_size={batch_size}")
    path = tmp_path / f"{name}-b{batch_size}.yaml"
    dump_config(cfg, path)
    return path


def launch(num_processes: int, args: list[str]) -> None:
    """Run `python ARGS` on 1 process, or under torchrun on CPU (gloo) for more; fail on error."""
    prefix = [sys.executable]
    if num_processes > 1:
        prefix += ["-m", "torch.distributed.run", "--nproc_per_node", str(num_processes)]
    # One thread each: 2 processes on the 2-core box would otherwise oversubscribe it.
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def train(num_processes: int, config: Path) -> None:
    """`altcap train CONFIG` on `num_processes` processes."""
    launch(num_processes, ["-m", "altcap.cli", "train", str(config)])


def train_until_step(num_processes: int, config: Path, tmp_path: Path) -> None:
    """Train and stop every process right after the checkpoint of STOP_STEP."""
    script = tmp_path / "stopper.py"
    script.write_text(STOPPER, encoding="utf-8")
    launch(num_processes, [str(script), str(config), str(STOP_STEP)])


def assert_same_curve(rows: list[dict], expected: list[dict]) -> None:
    """Same steps, epochs and lr; losses (train and val) equal within LOSS_TOL."""
    assert [(r["step"], r["epoch"]) for r in rows] == [(r["step"], r["epoch"]) for r in expected]
    for row, ref in zip(rows, expected, strict=True):
        assert row["lr"] == pytest.approx(ref["lr"], rel=1e-12), row
        assert set(row) == set(ref), row
        for key in ("loss", "val_loss"):
            if key in ref:
                assert row[key] == pytest.approx(ref[key], rel=LOSS_TOL, abs=LOSS_TOL), (key, row, ref)


def assert_same_adapter(out: Path, reference: Path) -> None:
    """Final LoRA weights equal within WEIGHT_TOL."""
    got, want = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (out, reference))
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=WEIGHT_TOL, atol=WEIGHT_TOL, msg=name)


@pytest.fixture(scope="module")
def reference_run(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(tmp folder, manifest, run folder) of an uninterrupted 1-process run with batch 4."""
    tmp_path = tmp_path_factory.mktemp("multiprocess")
    manifest = write_equal_length_manifest(tmp_path / "data")
    train(1, write_run_config(tmp_path, tiny_model("blip"), manifest, "reference", batch_size=4))
    return tmp_path, manifest, tmp_path / "reference"


@pytest.mark.slow
def test_reference_curve_moves_well_beyond_the_tolerance(reference_run) -> None:
    # Otherwise matching curves within LOSS_TOL would prove nothing.
    rows = read_log(reference_run[2])
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    losses = [r["loss"] for r in rows]
    assert max(losses) - min(losses) > 1000 * LOSS_TOL


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tiny_model, reference_run) -> None:
    tmp_path, manifest, reference = reference_run
    train(2, write_run_config(tmp_path, tiny_model("blip"), manifest, "ddp", batch_size=2))
    assert_same_curve(read_log(tmp_path / "ddp"), read_log(reference))
    assert_same_adapter(tmp_path / "ddp", reference)


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)], ids=["2-then-1", "1-then-2"])
def test_checkpoint_resumes_on_another_process_count(
    tiny_model, reference_run, first: int, then: int
) -> None:
    tmp_path, manifest, reference = reference_run
    name = f"resume-{first}-then-{then}"
    global_batch = 4
    train_until_step(
        first, write_run_config(tmp_path, tiny_model("blip"), manifest, name, global_batch // first), tmp_path
    )
    out = tmp_path / name
    assert find_latest_checkpoint(out).name == f"step-{STOP_STEP}"
    assert not (out / "adapter").exists()

    train(then, write_run_config(tmp_path, tiny_model("blip"), manifest, name, global_batch // then))

    assert_same_curve(read_log(out), read_log(reference))
    assert_same_adapter(out, reference)


def test_resume_with_another_global_batch_is_refused(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    saved = TrainState(global_step=3, batches_in_epoch=1, global_batch_size=4)
    folder = save_checkpoint(tmp_path, model, optimizer, scheduler, saved)

    # 1 x 4 or 2 x 2 (same product) resumes at the same position...
    assert load_checkpoint(folder, model, optimizer, scheduler, global_batch_size=4) == saved
    # ...2 x 4 would skip twice the examples the saved position stands for.
    with pytest.raises(CheckpointError, match=r"global batch of 4 examples .* this run has 8"):
        load_checkpoint(folder, model, optimizer, scheduler, global_batch_size=8)


def test_checkpoint_without_global_batch_takes_the_current_one(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = save_checkpoint(tmp_path, model, optimizer, scheduler, TrainState(global_step=2))
    # Written before the field existed (or with no count given): nothing to check against.
    state = load_checkpoint(folder, model, optimizer, scheduler, global_batch_size=6)
    assert state.global_batch_size == 6 and state.global_step == 2
