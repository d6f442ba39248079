"""`altcap train CONFIG.yaml [--set key=value ...] [--gpus N]`: thin CLI over `run_train`.

With `--gpus N` (N > 1) the command re-runs itself on N workers through `accelerate launch`.

No torch / transformers import at module level, so `altcap --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from altcap.cli_options import SetOptions, fail, resolve_config
from altcap.train.launch import forward_options, needs_relaunch

# CLI flag parameter -> TrainConfig field it sets (a test keeps this in sync with the config).
FLAG_FIELDS = {
    "model_id": "model.model_id",
    "family": "model.family",
    "manifest": "data.manifest",
    "output_dir": "output_dir",
    "objective": "objective",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "grad_accum_steps": "grad_accum_steps",
    "lr": "optim.lr",
    "lora_r": "lora.r",
    "precision": "precision",
    "seed": "seed",
    "report_to": "report_to",
    "resume": "resume",
    "merge": "merge",
    "qlora": "qlora",
    "gradient_checkpointing": "gradient_checkpointing",
    "num_workers": "num_workers",
    "gpus": "launch.num_processes",
    "accelerate_config": "launch.accelerate_config",
}


def train_command(
    config: Annotated[Path | None, typer.Argument(help="YAML config file.")] = None,
    model_id: Annotated[str | None, typer.Option(help="model.model_id: hub id or local folder.")] = None,
    family: Annotated[str | None, typer.Option(help="model.family (None infers it).")] = None,
    manifest: Annotated[Path | None, typer.Option(help="data.manifest: JSONL from `altcap data`.")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="output_dir: the run folder.")] = None,
    objective: Annotated[
        str | None, typer.Option(help="objective: cross_entropy, or scst (CIDEr-D reward, after it).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="max_steps: cap on optimizer steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch_size per device.")] = None,
    grad_accum_steps: Annotated[int | None, typer.Option(help="grad_accum_steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="optim.lr: peak learning rate.")] = None,
    lora_r: Annotated[int | None, typer.Option(help="lora.r: LoRA rank.")] = None,
    precision: Annotated[str | None, typer.Option(help="precision: bf16, fp16 or fp32.")] = None,
    seed: Annotated[int | None, typer.Option(help="seed.")] = None,
    report_to: Annotated[str | None, typer.Option(help="report_to: tensorboard/wandb/mlflow/none.")] = None,
    resume: Annotated[bool | None, typer.Option("--resume/--no-resume", help="resume: None=auto.")] = None,
    merge: Annotated[bool | None, typer.Option("--merge/--no-merge", help="merge: save merged/.")] = None,
    qlora: Annotated[bool | None, typer.Option("--qlora/--no-qlora", help="qlora: 4-bit NF4 base.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Save memory.")
    ] = None,
    num_workers: Annotated[int | None, typer.Option(help="num_workers: DataLoader workers.")] = None,
    gpus: Annotated[
        int | None, typer.Option(help="launch.num_processes: >1 re-runs this through `accelerate launch`.")
    ] = None,
    accelerate_config: Annotated[
        str | None, typer.Option(help="launch.accelerate_config: ddp, zero2, zero3, fsdp or a YAML path.")
    ] = None,
    set_: SetOptions = None,
) -> None:
    """Fine-tune a captioning model with LoRA on a manifest; writes adapter/, logs and plots."""
    from altcap.config import ConfigError
    from altcap.data.images import ImageLoadError
    from altcap.train.config import TrainConfig

    values = locals()
    flags = {field: values[name] for name, field in FLAG_FIELDS.items()}
    cfg = resolve_config(TrainConfig, config, flags, set_)
    if needs_relaunch(cfg.launch.num_processes):
        launch_workers(cfg, forward_options(config, flags, set_))
        return
    from altcap.train.checkpoint import CheckpointError
    from altcap.train.loop import TrainingDivergedError
    from altcap.train.run import run_train

    try:
        out = run_train(cfg)
    except (ConfigError, ImageLoadError) as err:  # ImageLoadError: an image changed after the screen
        raise fail(str(err)) from err
    except (TrainingDivergedError, CheckpointError) as err:
        raise fail(str(err), code=1) from err
    typer.echo(f"adapter written to {out / 'adapter'}")


def launch_workers(cfg: Any, train_args: list[str]) -> None:
    """Run this command on `cfg.launch.num_processes` workers; exit with their launcher's code.

    Args:
        cfg: the resolved TrainConfig.
        train_args: arguments after `altcap train` that reproduce `cfg` (from `forward_options`).
    """
    from altcap.config import ConfigError
    from altcap.train.launch import relaunch

    try:
        code = relaunch(cfg.launch.num_processes, cfg.launch.accelerate_config, train_args)
    except ConfigError as err:
        raise fail(str(err)) from err
    if code != 0:
        raise fail(f"`accelerate launch` exited with code {code}; the workers' errors are above", code=code)
    typer.echo(f"adapter written to {cfg.output_dir / 'adapter'}")
