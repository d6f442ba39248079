"""`altcap caption`: thin Typer entry; torch and transformers are imported only when it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from altcap.cli_options import ConfigInput, Flag, config_command, fail
from altcap.cli_output import show_note
from altcap.config import PipelineSection
from altcap.data.sample import sample_manifest
from altcap.infer.config import CaptionConfig
from altcap.launch import LaunchError, forward_options, launch_workers, needs_relaunch

if TYPE_CHECKING:  # only for annotations: importing it at load time would pull in model code
    from altcap.infer.caption import CaptionSummary

GENERATION_FLAGS = (
    "num_beams",
    "length_penalty",
    "max_new_tokens",
    "min_new_tokens",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "do_sample",
    "temperature",
    "top_p",
)

# The fields that get a flag of their own; every other field is reachable with --set.
CAPTION_FLAGS = [
    Flag("model.model_id"),
    Flag("model.family"),
    Flag("model.adapter"),
    Flag("model.dtype"),
    Flag("model.device"),
    Flag("manifest"),
    Flag("split"),
    Flag("images"),
    Flag("out"),
    Flag("prompt"),
    *(Flag(f"generation.{name}") for name in GENERATION_FLAGS),
    Flag("batch_size"),
    Flag("limit"),
    Flag("num_processes", name="gpus"),
    Flag("accelerate_config"),
    Flag("seed"),
]


# `altcap caption --config demo.yaml` captions what `altcap run demo.yaml` captions with the base model.
CAPTION_SECTION = PipelineSection(
    "caption",
    lifts={"model": "model", "manifest": "manifest"},
    when_null={"manifest": sample_manifest},
)


@config_command(
    CaptionConfig,
    CAPTION_FLAGS,
    example="altcap caption --config src/altcap/configs/demo.yaml --limit 2 --out captions.jsonl",
    config_argument=True,
    section=CAPTION_SECTION,
)
def caption_command(cfg: CaptionConfig, given: ConfigInput) -> None:
    """Caption a manifest split (or --split all) or an image folder.

    Resumable: an existing --out file is continued, images already captioned are skipped.
    With --gpus N, N processes caption shares of the images and the shards merge in manifest order.
    """
    if needs_relaunch(cfg.num_processes):
        _launch(cfg, forward_options(given.path, given.flags, given.sets))
        return
    summary = _run(cfg)
    show_note(
        f"wrote {summary.written_images} caption(s) to {summary.out} "
        f"({summary.skipped_images} already there, {summary.total_images} total) in {summary.seconds:.1f} s"
    )


FLAG_FIELDS = caption_command.altcap_fields


def _launch(cfg: CaptionConfig, caption_args: list[str]) -> None:
    """Caption on `cfg.num_processes` workers; a failed launch exits with its code."""
    try:
        launch_workers(cfg.num_processes, cfg.accelerate_config, caption_args, "caption")
    except LaunchError as err:
        raise fail(str(err), code=err.exit_code) from err


def _run(cfg: CaptionConfig) -> CaptionSummary:
    from altcap.data.images import ImageLoadError
    from altcap.data.manifest import ManifestError
    from altcap.infer.caption import run_caption
    from altcap.infer.captions_file import CaptionsFileError
    from altcap.infer.items import CaptionError
    from altcap.models.loading import ModelLoadError

    try:
        return run_caption(cfg)
    except (CaptionError, ModelLoadError, CaptionsFileError, ManifestError, ImageLoadError) as err:
        raise fail(str(err)) from err
