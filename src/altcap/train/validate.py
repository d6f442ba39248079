"""Check a `TrainConfig` before any work starts, and report every problem at once.

Nothing here loads model weights: the model id and family come from the checkpoint's config, the
LoRA targets are matched on a weightless (meta-device) copy of the model, and the first training
batch is pushed through the real processor. A bad run therefore fails in seconds, listing all
of its problems, instead of after the weights (or an epoch) have loaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from altcap.config import ConfigError
from altcap.data.image_screen import UnreadableImage, describe_unreadable, screen_listed_images
from altcap.data.images import ImageLoadError
from altcap.data.manifest import ManifestError, read_manifest
from altcap.models.chat_lora import add_part_targets
from altcap.models.loading import (
    ModelLoadError,
    build_weightless_model,
    linear_layer_names,
    load_processor,
    read_model_config,
    resolve_family,
    resolve_lora_targets,
)
from altcap.models.registry import ModelFamily, families_with
from altcap.train.checkpoint import find_latest_checkpoint
from altcap.train.config import TrainConfig
from altcap.train.data import Example, load_rgb, read_split_examples
from altcap.train.logs import check_tracker_available
from altcap.train.objectives import OBJECTIVES, Objective, check_objective_settings, get_objective


@dataclass
class TrainPlan:
    """What validation found out, reused by `run_train` so nothing is read twice."""

    family: ModelFamily | None = None
    objective: Objective = OBJECTIVES["cross_entropy"]
    train_examples: list[Example] = field(default_factory=list)
    val_examples: list[Example] = field(default_factory=list)
    use_cache: bool = False
    resume_from: Path | None = None
    precision: str = "fp32"
    notes: list[str] = field(default_factory=list)
    unreadable_images: list[UnreadableImage] = field(default_factory=list)


def cuda_available() -> bool:
    """Whether a CUDA device can be used (imported lazily so the CLI stays light)."""
    import torch

    return torch.cuda.is_available()


def check_model(cfg: TrainConfig, plan: TrainPlan, problems: list[str]) -> Any:
    """Resolve model id and family; returns the transformers config (None on failure)."""
    try:
        hf_config = read_model_config(cfg.model)
        plan.family = resolve_family(cfg.model, hf_config.model_type)
    except ModelLoadError as err:
        problems.append(f"model: {err}")
        return None
    return hf_config


def check_data(cfg: TrainConfig, plan: TrainPlan, problems: list[str]) -> None:
    """The manifest exists, has training examples, and their images exist."""
    manifest = cfg.data.manifest
    if manifest is None:
        problems.append("data.manifest is not set; pass --manifest PATH (a manifest from `altcap data`)")
        return
    try:
        per_image = plan.objective.one_example_per_image
        # Contexts go only to families that follow instructions (a fixed prefix reads as caption text).
        takes_context = plan.family is not None and plan.family.follows_instructions
        template = cfg.data.context_template if takes_context else None
        plan.train_examples = read_split_examples(
            manifest, cfg.data.train_split, cfg.data.prompt, cfg.data.max_train_records, per_image, template
        )
        if cfg.data.val_split:
            plan.val_examples = read_split_examples(
                manifest, cfg.data.val_split, cfg.data.prompt, cfg.data.max_val_records, per_image, template
            )
    except ManifestError as err:
        problems.append(f"data.manifest: {err}")
        return
    if not plan.train_examples:
        splits = sorted({str(r.split) for r in read_manifest(manifest)})
        problems.append(
            f"{manifest}: no training records (with captions) in split {cfg.data.train_split!r}; "
            f"splits present: {', '.join(splits) or 'none'}. Run `altcap data split` or set data.train_split"
        )
    elif cfg.data.val_split and not plan.val_examples:
        plan.notes.append(f"{manifest}: no records in split {cfg.data.val_split!r}; no validation")
    missing = sorted({str(e.image) for e in plan.train_examples + plan.val_examples if not e.image.is_file()})
    if missing:
        problems.append(f"{manifest}: {len(missing)} image file(s) not found, e.g. {', '.join(missing[:3])}")
    check_images_readable(cfg, plan, problems)


def check_images_readable(cfg: TrainConfig, plan: TrainPlan, problems: list[str]) -> None:
    """Decode every train/val image once (the shared loader), so no later path meets a bad one;
    unreadable ones are a problem, or with `data.skip_unreadable_images` left out and counted."""
    paths = [e.image for e in plan.train_examples + plan.val_examples if e.image.is_file()]
    bad = screen_listed_images(paths, cfg.data.max_decoded_pixels, cfg.data.manifest)
    if bad and not cfg.data.skip_unreadable_images:
        flag = "--set data.skip_unreadable_images=true"
        problems.append(f"{cfg.data.manifest}: {describe_unreadable(bad, flag)}")
    elif bad:
        dropped = {image.path for image in bad}
        plan.train_examples = [e for e in plan.train_examples if str(e.image) not in dropped]
        plan.val_examples = [e for e in plan.val_examples if str(e.image) not in dropped]
        plan.unreadable_images = bad
        plan.notes.append(
            f"data.skip_unreadable_images: left out {len(bad)} unreadable image(s) "
            f"({'; '.join(image.describe() for image in bad[:3])}); listed in provenance.json"
        )
        if not plan.train_examples:
            problems.append(f"{cfg.data.manifest}: every training image is unreadable; nothing to train on")


def lora_targets(cfg: TrainConfig, family: ModelFamily, model: Any) -> tuple[list[str], str | None]:
    """The LoRA target leaf names and scope the config asks for (the family's frozen-part targets
    added, searched in the whole model, when `lora.include_qformer` asks for them).

    A family's defaults may list several spellings of one layer; only those the model has are
    kept, while user-given targets are passed through so a typo is still an error.
    """
    if cfg.lora.target_modules:
        targets = list(cfg.lora.target_modules)
    else:
        present = {name.rsplit(".", 1)[-1] for name in linear_layer_names(model, family.lora_scope)}
        defaults = list(family.default_lora_targets)
        targets = [t for t in defaults if t in present] or defaults
    if parts := cfg.lora.adapted_parts():  # projector / vision tower: full names, whole model
        return add_part_targets(model, family, targets, parts), ""
    if not cfg.lora.include_qformer or family.frozen_part_lora is None:
        return targets, None
    return [*targets, *family.frozen_part_lora.targets], ""


def check_lora_targets(cfg: TrainConfig, family: ModelFamily, hf_config: Any, problems: list[str]) -> None:
    """Match the LoRA targets on a weightless copy of the model."""
    if cfg.lora.include_qformer and family.frozen_part_lora is None:
        problems.append(
            f"lora.include_qformer=true: family {family.name!r} has no frozen part to adapt; set it to "
            f"false. Families with one: {', '.join(families_with('frozen_part_lora'))}"
        )
        return
    if cfg.lora.adapted_parts() and family.part_lora is None:
        fields = ", ".join(f"lora.adapt_{part}=true" for part in cfg.lora.adapted_parts())
        problems.append(
            f"{fields}: family {family.name!r} has no projector / vision tower LoRA; set it to false. "
            f"Families with it: {', '.join(families_with('part_lora'))}"
        )
        return
    meta_model = build_weightless_model(family, hf_config)
    if meta_model is None:
        return  # its model exists only with its weights: the real apply_lora checks it later
    try:
        # The check apply_lora makes before PEFT wraps anything; wrapping the weightless copy too
        # cost ~0.8 s (a 24-layer model's 168 LoRA layers) and finds nothing more.
        targets, scope = lora_targets(cfg, family, meta_model)
        resolve_lora_targets(meta_model, family, targets, scope, "lora.target_modules")
    except ModelLoadError as err:
        problems.append(str(err))


# Examples the processor check runs on: two exercise padding and the processor's settings; every
# image was decoded by the screen already, and a whole batch cost tiling processors ~0.2 s an image
# (SmolVLM2 at batch 16: 2.9 s of a 3-epoch run's 17 s on an H100 host).
FIRST_BATCH_CHECKED = 2


def check_first_batch(cfg: TrainConfig, plan: TrainPlan, problems: list[str]) -> None:
    """Open the first examples' images and push them through the model's own processor."""
    batch = plan.train_examples[: min(cfg.batch_size, FIRST_BATCH_CHECKED)]
    images = []
    for example in batch:
        try:
            images.append(load_rgb(example.image))
        except ImageLoadError:
            return  # check_images_readable has reported it with its manifest lines
    if len(images) != len(batch):
        return
    try:
        processor = load_processor(plan.family, cfg.model)
        if processor is None:
            return  # the family's processor comes with its weights: checked when training starts
        plan.family.build_inputs(processor, images, [e.prompt for e in batch], [e.caption for e in batch])
    except Exception as err:  # any processor failure here is a data problem to report, not a crash
        problems.append(
            f"{cfg.data.manifest}: the first training images cannot be processed by {cfg.model.model_id!r}'s "
            f"processor ({type(err).__name__}: {err}); images: {', '.join(str(e.image) for e in batch[:3])}"
        )


def check_runtime(cfg: TrainConfig, plan: TrainPlan, problems: list[str]) -> None:
    """Tracker package, QLoRA prerequisites, precision on CPU, resume state, feature cache."""
    if message := check_tracker_available(cfg.report_to):
        problems.append(message)
    has_cuda = cuda_available()
    if cfg.qlora and not has_cuda:
        problems.append("qlora=true needs a CUDA GPU (bitsandbytes 4-bit); none found. Set qlora=false")
    if cfg.qlora and importlib.util.find_spec("bitsandbytes") is None:
        problems.append("qlora=true needs bitsandbytes; `pip install bitsandbytes` or set qlora=false")
    if cfg.cuda_graphs and not has_cuda:
        problems.append("cuda_graphs=true needs a CUDA GPU; none found. Set cuda_graphs=false")
    if cfg.cuda_graphs and plan.family is not None and plan.family.graphed_training is None:
        problems.append(
            f"cuda_graphs=true: family {plan.family.name!r} cannot replay its training passes as CUDA "
            f"graphs; set cuda_graphs=false. Families that can: "
            f"{', '.join(families_with('graphed_training'))}"
        )
    plan.precision = cfg.precision if has_cuda else "fp32"
    if plan.precision != cfg.precision:
        plan.notes.append(f"precision={cfg.precision} needs a GPU; training in fp32 on CPU")
    plan.resume_from = find_latest_checkpoint(cfg.output_dir)
    if cfg.resume is True and plan.resume_from is None:
        problems.append(f"resume=true but {cfg.output_dir} has no checkpoint; drop --resume to start fresh")
    if cfg.resume is False and plan.resume_from is not None:
        problems.append(
            f"resume=false but {cfg.output_dir} already holds a run ({plan.resume_from}); choose a new "
            "output_dir, or resume it"
        )
        plan.resume_from = None


def decide_cache(cfg: TrainConfig, plan: TrainPlan, problems: list[str]) -> None:
    """Use the feature cache when asked, or by default when the family can split off its frozen part;
    refuse settings that need a capability the family lacks."""
    family = plan.family
    if cfg.qlora and family is not None and family.quantized is None:
        problems.append(
            f"qlora=true: family {family.name!r} has no 4-bit loader; set qlora=false. Families with one: "
            f"{', '.join(families_with('quantized'))}"
        )
    can_cache = family is not None and family.feature_cache is not None
    if cfg.feature_cache.enabled and family is not None and not can_cache:
        problems.append(f"feature_cache.enabled=true: family {family.name!r} cannot cache; set it to false")
    if cfg.train_vision_blocks and family is not None and family.vision_blocks is None:
        problems.append(
            f"train_vision_blocks={cfg.train_vision_blocks}: family {family.name!r} cannot train vision "
            "blocks; set it to 0"
        )
    requested = cfg.feature_cache.enabled
    trains_frozen_part = cfg.lora.include_qformer or cfg.train_vision_blocks > 0 or cfg.lora.adapted_parts()
    needs_pixels = trains_frozen_part or plan.objective.samples_from_pixels
    plan.use_cache = can_cache and not needs_pixels and requested is not False
    check = family.feature_cache.check if plan.use_cache else None
    if check is not None and (reason := check(family.hf_class)) is not None:
        plan.use_cache = False  # asked for: an error; by default: off, said once
        (problems if requested else plan.notes).append(f"feature cache off: {reason}")
    if can_cache and requested is None and cfg.lora.adapted_parts():
        fields = ", ".join(f"lora.adapt_{part}" for part in cfg.lora.adapted_parts())
        plan.notes.append(f"feature cache off: {fields} trains part of what it would cache")


def validate_train_config(cfg: TrainConfig) -> TrainPlan:
    """Run every check and raise one `ConfigError` listing all problems.

    Args:
        cfg: the resolved training config.

    Returns:
        The plan (family, examples, cache and resume decisions, notes to log).

    Raises:
        ConfigError: one line per problem, each naming the field or file, the value and the fix.
    """
    plan = TrainPlan(objective=get_objective(cfg.objective))
    problems = check_objective_settings(cfg)
    hf_config = check_model(cfg, plan, problems)
    check_data(cfg, plan, problems)
    check_runtime(cfg, plan, problems)
    decide_cache(cfg, plan, problems)
    if plan.family is not None and hf_config is not None:
        check_lora_targets(cfg, plan.family, hf_config, problems)
        if plan.train_examples:
            check_first_batch(cfg, plan, problems)
    if problems:
        raise ConfigError(problems)
    return plan
