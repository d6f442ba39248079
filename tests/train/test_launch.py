"""`altcap train --gpus N`: the shipped accelerate configs, the relaunch command, and a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType
from train_fixtures import read_log, write_manifest
from typer.testing import CliRunner

from altcap import launch
from altcap.cli import app
from altcap.config import ConfigError, load_config
from altcap.train.commands import FLAG_FIELDS
from altcap.train.config import TrainConfig

EXPECTED_TYPE = {
    "ddp": DistributedType.MULTI_GPU,
    "zero2": DistributedType.DEEPSPEED,
    "zero3": DistributedType.DEEPSPEED,
    "fsdp": DistributedType.FSDP,
}


@pytest.mark.slow  # importing accelerate's launch machinery takes ~5 s
@pytest.mark.parametrize("name", sorted(launch.SHIPPED_ACCELERATE_CONFIGS))
def test_shipped_config_loads_and_validates_with_accelerate(name: str) -> None:
    path = launch.resolve_accelerate_config(name)
    loaded = load_config_from_file(str(path))
    assert loaded.distributed_type == EXPECTED_TYPE[name]
    if name.startswith("zero"):
        assert loaded.deepspeed_config["zero_stage"] == int(name[-1])
    # What `accelerate launch` runs on its arguments before starting anything.
    args = launch_command_parser().parse_args(
        ["--config_file", str(path), "--num_processes", "2", "-m", "altcap.cli", "train"]
    )
    _validate_launch_command(args)
    assert args.num_processes == 2  # the command line's N wins over the file's 8


def test_accelerate_config_may_be_a_path(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n", encoding="utf-8")
    assert launch.resolve_accelerate_config(str(own)) == own


@pytest.mark.parametrize(
    ("value", "expected"),
    [("zero4", "not a shipped config name nor an existing file"), ("cfg/missing.yaml", "no such file")],
)
def test_unknown_accelerate_config_is_a_clear_error(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        launch.resolve_accelerate_config(value)
    message = str(err.value)
    assert f"launch.accelerate_config={value!r}" in message and expected in message
    assert "ddp, zero2, zero3, fsdp" in message


def test_launch_command_names_the_config_and_forwards_options(tmp_path: Path) -> None:
    flags = dict.fromkeys(FLAG_FIELDS.values())
    flags |= {"output_dir": tmp_path / "run", "launch.num_processes": 2, "optim.lr": 1e-4}
    train_args = launch.forward_options(Path("base.yaml"), flags, ["seed=7", "lora.r=4"])
    command = launch.build_launch_command(2, launch.resolve_accelerate_config("zero2"), train_args)

    config_file = Path(command[command.index("--config_file") + 1])
    assert config_file.name == "deepspeed_zero2.yaml" and config_file.is_file()
    assert command[command.index("--num_processes") + 1] == "2"
    tail = command[command.index("-m", 3) :]
    assert tail[:4] == ["-m", "altcap.cli", "train", "base.yaml"]
    # --set options come last and unchanged, so they keep precedence over the flags.
    assert tail[-4:] == ["--set", "seed=7", "--set", "lora.r=4"]


def test_forwarded_options_rebuild_the_same_config(tmp_path: Path) -> None:
    flags = dict.fromkeys(FLAG_FIELDS.values())
    flags |= {
        "model.model_id": "Salesforce/blip-image-captioning-base",
        "output_dir": tmp_path / "run with space",
        "launch.num_processes": 4,
        "launch.accelerate_config": "fsdp",
        "optim.lr": 3e-5,
        "merge": True,
        "data.prompt": "007",  # a string that YAML would otherwise read as a number
    }
    sets = ["lora.dropout=0", "seed=3"]
    original = load_config(TrainConfig, None, flags, sets)
    sets_only = launch.forward_options(None, flags, sets)[1::2]
    assert load_config(TrainConfig, None, {}, sets_only) == original


def test_workers_do_not_launch_again(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch.needs_relaunch(2) and not launch.needs_relaunch(1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not launch.needs_relaunch(2)


def test_cli_gpus_runs_accelerate_launch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    seen: list[list[str]] = []
    monkeypatch.setattr(
        launch.subprocess, "run", lambda cmd, **_: seen.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--gpus", "2", "--output-dir", str(out), "--set", "seed=5"])
    assert result.exit_code == 0, result.output
    (command,) = seen
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert Path(command[command.index("--config_file") + 1]).name == "ddp.yaml"
    assert f"output_dir={json.dumps(str(out))}" in command and "launch.num_processes=2" in command
    assert command[-2:] == ["--set", "seed=5"]


def test_cli_unknown_accelerate_config_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    result = CliRunner().invoke(app, ["train", "--gpus", "2", "--accelerate-config", "zero9"])
    assert result.exit_code == 2
    assert "launch.accelerate_config='zero9'" in result.output


@pytest.mark.slow
def test_gpus_2_trains_on_two_cpu_processes(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=2)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "altcap.cli", "train", "--gpus", "2", "--accelerate-config", "ddp"]
    command += ["--model-id", str(tiny_model("blip")), "--manifest", str(manifest), "--output-dir", str(out)]
    command += ["--epochs", "2", "--batch-size", "2", "--lora-r", "4", "--report-to", "none"]
    command += ["--set", "grad_accum_steps=1", "--set", "log_every_n_steps=1"]
    command += ["--set", f"feature_cache.dir={tmp_path / 'cache'}"]
    # No CUDA here, so the launcher itself sets ACCELERATE_USE_CPU and the workers use gloo.
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "ACCELERATE_USE_CPU")}
    env |= {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    # 8 examples over 2 processes x batch 2: 2 steps per epoch, so the workers really were 2.
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4]
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["device"] == "2 x cpu"
    assert provenance["config"]["launch"] == {"num_processes": 2, "accelerate_config": "ddp"}


def test_launch_workers_raises_the_exit_code_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(launch.LaunchError, match=r"launch\.accelerate_config='zero9'") as bad_config:
        launch.launch_workers(2, "zero9", [], "train")
    assert bad_config.value.exit_code == 2
    monkeypatch.setattr(launch.subprocess, "run", lambda cmd, **_: subprocess.CompletedProcess(cmd, 3))
    expected = "exited with code 3; the workers' errors are above"
    with pytest.raises(launch.LaunchError, match=expected) as failed:
        launch.launch_workers(2, "ddp", ["--limit", "1"], "caption")
    assert failed.value.exit_code == 3


@pytest.mark.parametrize("command", ["train", "caption"])
def test_cli_failed_workers_exit_with_their_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    seen: list[list[str]] = []
    monkeypatch.setattr(
        launch.subprocess, "run", lambda cmd, **_: seen.append(cmd) or subprocess.CompletedProcess(cmd, 3)
    )
    source = ["--images", str(tmp_path)] if command == "caption" else []
    result = CliRunner().invoke(app, [command, "--gpus", "2", *source])
    assert result.exit_code == 3, result.output
    assert "exited with code 3" in result.output and "Traceback" not in result.output
    assert seen[0][seen[0].index("altcap.cli") + 1] == command
