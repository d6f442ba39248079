"""`altcap train [--config] CONFIG.yaml [--set key=value ...] [--gpus N]`: thin CLI over `run_train`.

Its flags are generated from `TrainConfig` (`cli_options.config_command`).

With `--gpus N` (N > 1) the command re-runs itself on N workers through `accelerate launch`.

No torch / transformers import at module level, so `altcap --help` stays fast.
"""

from __future__ import annotations

import typer

from altcap.cli_options import ConfigInput, Flag, config_command, fail
from altcap.config import PipelineSection
from altcap.data.sample import sample_manifest
from altcap.launch import LaunchError, forward_options, launch_workers, needs_relaunch
from altcap.train.config import TrainConfig

# The fields that get a flag of their own; every other field is reachable with --set.
TRAIN_FLAGS = [
    Flag("model.model_id"),
    Flag("model.family"),
    Flag("data.manifest"),
    Flag("output_dir"),
    Flag("objective"),
    Flag("epochs"),
    Flag("max_steps"),
    Flag("batch_size"),
    Flag("grad_accum_steps"),
    Flag("optim.lr"),
    Flag("lora.r", name="lora_r"),
    Flag("lora.adapt_projector"),
    Flag("lora.adapt_vision"),
    Flag("precision"),
    Flag("seed"),
    Flag("report_to"),
    Flag("resume"),
    Flag("merge"),
    Flag("qlora"),
    Flag("gradient_checkpointing"),
    Flag("lean_activations"),
    Flag("cuda_graphs"),
    Flag("num_workers"),
    Flag("launch.num_processes", name="gpus"),
    Flag("launch.accelerate_config"),
]


# `altcap train --config demo.yaml` trains what `altcap run demo.yaml` would: its train section plus
# the pipeline-wide model and manifest (null = the embedded sample).
TRAIN_SECTION = PipelineSection(
    "train",
    lifts={"model": "model", "manifest": "data.manifest"},
    when_null={"manifest": sample_manifest},
)


@config_command(
    TrainConfig,
    TRAIN_FLAGS,
    example="altcap train --config src/altcap/configs/demo.yaml --max-steps 2 --output-dir runs/try",
    config_argument=True,
    section=TRAIN_SECTION,
)
def train_command(cfg: TrainConfig, given: ConfigInput) -> None:
    """Fine-tune a captioning model with LoRA on a manifest; writes adapter/, logs and plots.

    An unfinished run in OUTPUT_DIR resumes from its last checkpoint (on the same data only);
    give another --output-dir to start afresh.
    """
    from altcap.config import ConfigError
    from altcap.data.images import ImageLoadError

    if needs_relaunch(cfg.launch.num_processes):
        _launch(cfg, forward_options(given.path, given.flags, given.sets))
        return
    from altcap.train.checkpoint import CheckpointError, find_latest_checkpoint
    from altcap.train.loop import TrainingDivergedError
    from altcap.train.run import run_train

    latest = find_latest_checkpoint(cfg.output_dir)
    if latest is not None and cfg.resume is not False:
        typer.echo(f"resuming the unfinished run in {cfg.output_dir} from {latest.name}")
    try:
        out = run_train(cfg)
    except (ConfigError, ImageLoadError) as err:  # ImageLoadError: an image changed after the screen
        raise fail(str(err)) from err
    except (TrainingDivergedError, CheckpointError) as err:
        raise fail(str(err), code=1) from err
    typer.echo(f"adapter written to {out / 'adapter'}")


FLAG_FIELDS = train_command.altcap_fields


def _launch(cfg: TrainConfig, train_args: list[str]) -> None:
    """Train on `cfg.launch.num_processes` workers; a failed launch exits with its code."""
    try:
        launch_workers(cfg.launch.num_processes, cfg.launch.accelerate_config, train_args, "train")
    except LaunchError as err:
        raise fail(str(err), code=err.exit_code) from err
    typer.echo(f"adapter written to {cfg.output_dir / 'adapter'}")
