"""`altcap caption`: thin Typer entry; torch and transformers are imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from altcap.cli_options import ConfigPath, SetOptions, error_console, fail, resolve_config
from altcap.train.launch import forward_options, needs_relaunch

if TYPE_CHECKING:  # only for annotations: importing these at load time would pull in model code
    from altcap.infer.caption import CaptionSummary
    from altcap.infer.config import CaptionConfig

# Each flag sets exactly one CaptionConfig field (tests keep this map and the fields in sync).
FLAG_FIELDS = {
    "model_id": "model.model_id",
    "family": "model.family",
    "adapter": "model.adapter",
    "dtype": "model.dtype",
    "device": "model.device",
    "manifest": "manifest",
    "split": "split",
    "images": "images",
    "out": "out",
    "prompt": "prompt",
    "num_beams": "generation.num_beams",
    "length_penalty": "generation.length_penalty",
    "max_new_tokens": "generation.max_new_tokens",
    "min_new_tokens": "generation.min_new_tokens",
    "repetition_penalty": "generation.repetition_penalty",
    "no_repeat_ngram_size": "generation.no_repeat_ngram_size",
    "do_sample": "generation.do_sample",
    "temperature": "generation.temperature",
    "top_p": "generation.top_p",
    "batch_size": "batch_size",
    "limit": "limit",
    "seed": "seed",
    "gpus": "num_processes",
    "accelerate_config": "accelerate_config",
}


def caption_command(
    config: ConfigPath = None,
    model_id: Annotated[str | None, typer.Option(help="Hub id or folder of the base model.")] = None,
    family: Annotated[
        str | None, typer.Option(help="Model family; default: inferred from the checkpoint.")
    ] = None,
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter folder from `altcap train`.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="bfloat16 | float16 | float32 (default: bf16 on GPU).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest JSONL to caption.")] = None,
    split: Annotated[str | None, typer.Option(help="Manifest split (default test).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder of images (instead of --manifest).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output captions JSONL; an existing one is resumed.")
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="Instruction for images without their own prompt.")
    ] = None,
    num_beams: Annotated[int | None, typer.Option(help="Beam width.")] = None,
    length_penalty: Annotated[float | None, typer.Option(help="Beam length penalty.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most new tokens per caption.")] = None,
    min_new_tokens: Annotated[int | None, typer.Option(help="Fewest new tokens per caption.")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="Repetition penalty (1.0 = off).")] = None,
    no_repeat_ngram_size: Annotated[
        int | None, typer.Option(help="Block repeated n-grams of this size.")
    ] = None,
    do_sample: Annotated[bool | None, typer.Option("--do-sample/--no-do-sample", help="Sample.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per generate call.")] = None,
    limit: Annotated[int | None, typer.Option(help="Caption only the first N images.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    gpus: Annotated[
        int | None, typer.Option(help="num_processes: >1 shards the images over N processes (accelerate).")
    ] = None,
    accelerate_config: Annotated[
        str | None, typer.Option(help="accelerate_config: ddp (default) or an accelerate YAML path.")
    ] = None,
    set_: SetOptions = None,
) -> None:
    """Caption a manifest split or an image folder (resumable; reruns skip captioned images)."""
    from altcap.infer.config import CaptionConfig

    given = locals()
    flags = {field: given[name] for name, field in FLAG_FIELDS.items()}
    cfg = resolve_config(CaptionConfig, config, flags, set_)
    if needs_relaunch(cfg.num_processes):
        _launch_workers(cfg, forward_options(config, flags, set_))
        return
    summary = _run(cfg)
    error_console.print(
        f"wrote {summary.written_images} caption(s) to {summary.out} "
        f"({summary.skipped_images} already there, {summary.total_images} total) in {summary.seconds:.1f} s",
        highlight=False,
    )


def _launch_workers(cfg: CaptionConfig, caption_args: list[str]) -> None:
    """Run this command on `cfg.num_processes` workers; exit with their launcher's code."""
    from altcap.config import ConfigError
    from altcap.train.launch import relaunch

    try:
        code = relaunch(cfg.num_processes, cfg.accelerate_config, caption_args, command="caption")
    except ConfigError as err:
        raise fail(str(err)) from err
    if code != 0:
        raise fail(f"`accelerate launch` exited with code {code}; the workers' errors are above", code=code)


def _run(cfg: CaptionConfig) -> CaptionSummary:
    from altcap.data.images import ImageLoadError
    from altcap.data.manifest import ManifestError
    from altcap.infer.caption import CaptionError, run_caption
    from altcap.infer.captions_file import CaptionsFileError
    from altcap.models.loading import ModelLoadError

    try:
        return run_caption(cfg)
    except (CaptionError, ModelLoadError, CaptionsFileError, ManifestError, ImageLoadError) as err:
        raise fail(str(err)) from err
