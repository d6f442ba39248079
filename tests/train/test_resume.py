import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import make_config, read_log, write_manifest

from altcap.config import dump_config
from altcap.train.checkpoint import find_latest_checkpoint
from altcap.train.run import run_train

# Runs training in a child process that SIGKILLs itself right after its second checkpoint is on
# disk, i.e. mid-epoch, with no chance to clean up: the harshest interruption there is.
KILLER = """
import os, signal, sys
from pathlib import Path
from altcap.config import load_config
from altcap.train import loop
from altcap.train.config import TrainConfig
from altcap.train.run import run_train

real_save = loop.save_checkpoint
saves = []

def save_then_die(*args, **kwargs):
    path = real_save(*args, **kwargs)
    saves.append(path)
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return path

loop.save_checkpoint = save_then_die
run_train(load_config(TrainConfig, Path(sys.argv[1])))
"""


@pytest.mark.slow
def test_sigkill_and_resume_matches_an_uninterrupted_run(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=2)
    sets = ("grad_accum_steps=1", "save_every_n_steps=3", "eval_every_n_steps=2", "optim.lr=5e-3")
    model_dir = tiny_model("blip")
    reference = make_config(model_dir, manifest, tmp_path / "reference", *sets)
    run_train(reference)

    interrupted = make_config(model_dir, manifest, tmp_path / "interrupted", *sets)
    config_path = tmp_path / "interrupted.yaml"
    dump_config(interrupted, config_path)
    child = subprocess.run([sys.executable, "-c", KILLER, str(config_path)], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert find_latest_checkpoint(interrupted.output_dir).name == "step-6"
    assert not (interrupted.output_dir / "adapter").exists()

    run_train(interrupted)  # resumes automatically from checkpoints/step-6

    assert read_log(interrupted.output_dir) == read_log(reference.output_dir)
    final = [
        load_file(str(find_latest_checkpoint(c.output_dir) / "trainable.safetensors"))
        for c in (reference, interrupted)
    ]
    assert final[0].keys() == final[1].keys()
    for name in final[0]:
        assert torch.equal(final[0][name], final[1][name]), name
    adapters = [
        load_file(str(c.output_dir / "adapter" / "adapter_model.safetensors"))
        for c in (reference, interrupted)
    ]
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])
