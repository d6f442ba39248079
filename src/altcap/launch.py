"""`altcap train|caption --gpus N`: re-run the same command on N processes through `accelerate launch`.

No distribution code of our own: the shipped accelerate configs (DDP, DeepSpeed ZeRO-2/3, FSDP)
say how, and `accelerate launch` starts the workers. Each worker runs the altcap command again; it
sees torchrun's LOCAL_RANK and does the work instead of launching once more.

Below the CLI layer (no cli_options import): failures are a `LaunchError` carrying the exit code,
which each command turns into its usual clear failure.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from altcap.config import ConfigError

logger = logging.getLogger(__name__)

# launch.accelerate_config name -> shipped file in altcap/configs/accelerate/.
SHIPPED_ACCELERATE_CONFIGS = {
    "ddp": "ddp.yaml",
    "zero2": "deepspeed_zero2.yaml",
    "zero3": "deepspeed_zero3.yaml",
    "fsdp": "fsdp.yaml",
}

class LaunchError(RuntimeError):
    """The workers could not be launched, or failed; `exit_code` is what the command should exit with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Set by torchrun (which `accelerate launch` uses) in every worker it starts.
_WORKER_ENV = ("LOCAL_RANK", "RANK")


def shipped_config_path(name: str) -> Path:
    """The installed path of a shipped accelerate config (e.g. "ddp" -> .../accelerate/ddp.yaml)."""
    folder = resources.files("altcap") / "configs" / "accelerate"
    return Path(str(folder / SHIPPED_ACCELERATE_CONFIGS[name]))


def resolve_accelerate_config(value: str) -> Path:
    """A shipped config name or a path to an accelerate YAML, as an existing file.

    Args:
        value: `launch.accelerate_config` (ddp, zero2, zero3, fsdp, or a file path).

    Returns:
        The config file to hand to `accelerate launch --config_file`.

    Raises:
        ConfigError: for a name that is not shipped and is not an existing file.
    """
    if value in SHIPPED_ACCELERATE_CONFIGS:
        return shipped_config_path(value)
    path = Path(value).expanduser()
    if path.is_file():
        return path
    names = ", ".join(SHIPPED_ACCELERATE_CONFIGS)
    looks_like_path = path.suffix in (".yaml", ".yml", ".json") or os.sep in value
    what = "no such file" if looks_like_path else "not a shipped config name nor an existing file"
    raise ConfigError(
        [f"launch.accelerate_config={value!r}: {what}; use one of {names}, or a path to an accelerate YAML"]
    )


def is_distributed_worker() -> bool:
    """True inside a process started by `accelerate launch` / torchrun."""
    return any(name in os.environ for name in _WORKER_ENV)


def needs_relaunch(num_processes: int) -> bool:
    """True when this command must start `num_processes` workers rather than train itself."""
    return num_processes > 1 and not is_distributed_worker()


def forward_options(config: Path | None, flags: dict[str, Any], sets: list[str] | None) -> list[str]:
    """The `altcap train` arguments that give a worker the same config this command resolved.

    Args:
        config: the YAML config path given, if any.
        flags: dotted field -> value of the Typer flags (None = not given).
        sets: the raw `--set key=value` options, forwarded unchanged (after the flags, so they
            keep their precedence over them).

    Returns:
        Arguments after `altcap train`; every flag becomes `--set field=<JSON value>`, which the
        YAML parser of `--set` reads back as the same value.
    """
    args = [str(config)] if config is not None else []
    for field, value in flags.items():
        if value is not None:
            plain = str(value) if isinstance(value, Path) else value
            args += ["--set", f"{field}={json.dumps(plain)}"]
    for option in sets or []:
        args += ["--set", option]
    return args


def build_launch_command(
    num_processes: int, config_file: Path, train_args: list[str], command: str = "train"
) -> list[str]:
    """`python -m accelerate.commands.launch --config_file F --num_processes N -m altcap.cli train ...`.

    Args:
        num_processes: worker processes (one per GPU).
        config_file: the accelerate config (from `resolve_accelerate_config`).
        train_args: arguments after `altcap <command>` (from `forward_options`).
        command: the altcap command the workers run (`altcap caption --gpus` shards images the same way).

    Returns:
        The command line; the current interpreter runs accelerate, so the same environment trains.
    """
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    launcher += ["--config_file", str(config_file), "--num_processes", str(num_processes)]
    return [*launcher, "-m", "altcap.cli", command, *train_args]


def build_launch_env() -> dict[str, str]:
    """The workers' environment: ours, plus ACCELERATE_USE_CPU when there is no CUDA GPU.

    Not `accelerate launch --cpu`: that starts a single process; torchrun workers with
    ACCELERATE_USE_CPU set instead form a gloo group on the CPU (how the tests run 2 processes).
    """
    import torch

    env = dict(os.environ)
    if not torch.cuda.is_available() and "ACCELERATE_USE_CPU" not in env:
        logger.warning("no CUDA GPU found: the processes train on the CPU (gloo)")
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def launch_workers(num_processes: int, accelerate_config: str, args: list[str], command: str) -> None:
    """Run `altcap <command> <args>` on `num_processes` workers through `accelerate launch`.

    Args:
        num_processes: worker processes (one per GPU).
        accelerate_config: `launch.accelerate_config` (shipped name or YAML path).
        args: arguments after `altcap <command>` (from `forward_options`).
        command: the altcap command the workers run ("train", "caption").

    Raises:
        LaunchError: exit code 2 for an unknown accelerate config name or a missing file (nothing
            started); the launcher's own code when any worker failed.
    """
    try:
        config_file = resolve_accelerate_config(accelerate_config)
    except ConfigError as err:
        raise LaunchError(str(err), exit_code=2) from err
    line = build_launch_command(num_processes, config_file, args, command)
    logger.warning("launching %d processes: %s", num_processes, " ".join(line))
    code = subprocess.run(line, env=build_launch_env(), check=False).returncode
    if code != 0:
        raise LaunchError(
            f"`accelerate launch` exited with code {code}; the workers' errors are above", exit_code=code
        )
