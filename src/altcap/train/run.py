"""`run_train(cfg)`: validate, load, cache features, train, and write the run folder.

Run folder layout: `adapter/` (PEFT), `best/` (lowest val loss adapter), `config.yaml`,
`provenance.json`, `train_log.jsonl`, `loss_curves.png` (SCST: `reward_curves.png`), `tensorboard/`,
`checkpoints/` (the last resumable checkpoint) and, with `merge`, `merged/`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from altcap.config import ConfigError, dump_config
from altcap.models.loading import ModelLoadError, apply_lora, load_model
from altcap.provenance import build_provenance
from altcap.train.cache import FeatureCache
from altcap.train.checkpoint import TrainState, describe_training_data, load_checkpoint, read_rng_state
from altcap.train.compile import compile_for_training
from altcap.train.config import TrainConfig
from altcap.train.cross_entropy import CaptionLoss  # noqa: F401 (benchmarks/profile_gpu.py imports it here)
from altcap.train.data import build_loader, caption_lengths
from altcap.train.frozen import fill_feature_cache, frozen_names, frozen_submodules, release_frozen_modules
from altcap.train.lean_activations import make_activations_lean
from altcap.train.logs import TENSORBOARD_DIR, TRAIN_LOG, TrainLogger, truncate_log
from altcap.train.loop import TrainRun, fit
from altcap.train.phases import PhaseTimer
from altcap.train.validate import TrainPlan, lora_targets, validate_train_config

logger = logging.getLogger(__name__)

_MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}
_WEIGHT_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def build_accelerator(cfg: TrainConfig, plan: TrainPlan) -> Any:
    """An Accelerator for the run's precision and tracker."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    # accelerate keeps its settings in a process-wide singleton that refuses a second, different
    # mixed precision; run_train may be called several times in one process (notebooks, tests).
    # The distributed part (PartialState) is kept.
    AcceleratorState._reset_state()

    project = ProjectConfiguration(
        project_dir=str(cfg.output_dir), logging_dir=str(cfg.output_dir / TENSORBOARD_DIR)
    )
    return Accelerator(
        mixed_precision=_MIXED_PRECISION[plan.precision],
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_config=project,
        # Batches come pinned (build_loader), so their copy to the GPU need not wait for the step before.
        dataloader_config=DataLoaderConfiguration(non_blocking=True),
    )


def load_train_model(cfg: TrainConfig, plan: TrainPlan, device: str) -> tuple[Any, Any]:
    """Load the base model on this process's device and wrap it with fresh LoRA layers."""
    update = {"dtype": cfg.model.dtype or _WEIGHT_DTYPE[plan.precision]}
    if cfg.model.device == "auto":
        update["device"] = device
    model_cfg = cfg.model.model_copy(update=update)
    model, processor, _ = load_model(model_cfg, four_bit=cfg.qlora)
    if cfg.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    targets, scope = lora_targets(cfg, plan.family, model)
    try:
        capability = plan.family.vision_blocks
        trains_vision = cfg.train_vision_blocks and capability is not None
        vision_blocks = capability.last_blocks(model, cfg.train_vision_blocks) if trains_vision else []
        model = apply_lora(
            model,
            plan.family,
            targets,
            cfg.lora.r,
            cfg.lora.alpha,
            cfg.lora.dropout,
            scope=scope,
            extra_modules_to_save=vision_blocks,
        )
    except ModelLoadError as err:
        raise ConfigError([str(err)]) from err
    if plan.precision in ("bf16", "fp16"):
        keep_lora_inputs_in_compute_dtype(model)
    if cfg.lean_activations and not (cfg.gradient_checkpointing or cfg.compile):
        make_activations_lean(model)
    return model, processor


class _UnlessAutocast:
    """Truthy (PEFT casts) except while autocast runs, which casts the weights itself."""

    def __bool__(self) -> bool:
        return not (torch.is_autocast_enabled("cuda") or torch.is_autocast_enabled("cpu"))


def keep_lora_inputs_in_compute_dtype(model: torch.nn.Module) -> int:
    """Under autocast, stop PEFT casting each LoRA layer's input to its fp32 adapter weights;
    returns the number of LoRA layers.

    Why: PEFT keeps adapter weights in fp32 under mixed precision and casts every LoRA layer's bf16
    input to fp32 before its dropout, and autocast casts it back to bf16 for the matrix product:
    on one H200, copies and fp32 dropout were 28 % of a Qwen2.5-VL-3B step's GPU time (68 of 239
    ms), these casts among them. Autocast casts the small weights instead; the product
    is the same bf16 one, so with dropout 0 the gradients are bitwise equal
    (tests/train/test_lora_input_dtype.py). Outside autocast (a probe, an fp32 forward) PEFT's own
    cast still runs: its switch reads this flag's truth at every call.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [module for module in model.modules() if isinstance(module, BaseTunerLayer)]
    for layer in layers:  # PEFT's own switch, as peft.helpers.disable_input_dtype_casting sets it
        layer.cast_input_dtype_enabled = _UnlessAutocast()
    return len(layers)


def build_optimizer(cfg: TrainConfig, module: torch.nn.Module, device: Any) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (fused kernel on CUDA unless configured off)."""
    params = [p for p in module.parameters() if p.requires_grad]
    fused = cfg.optim.fused if cfg.optim.fused is not None else torch.device(device).type == "cuda"
    return torch.optim.AdamW(
        params,
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
        fused=fused,
    )


def build_scheduler(cfg: TrainConfig, optimizer: Any, total_steps: int) -> Any:
    """The configured warm-up + decay schedule over `total_steps` optimizer steps."""
    from transformers import get_scheduler

    warmup = cfg.schedule.warmup_steps
    if warmup is None:
        warmup = math.ceil(cfg.schedule.warmup_ratio * total_steps)
    return get_scheduler(
        cfg.schedule.name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
    )


def count_total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps the run will take: epochs x ceil(batches / accumulation), capped by max_steps."""
    total = cfg.epochs * math.ceil(batches_per_epoch / cfg.grad_accum_steps)
    return min(total, cfg.max_steps) if cfg.max_steps else total


def save_adapter(model: Any, folder: Path) -> None:
    """Save a PEFT adapter through a temp folder + rename, replacing `folder` only once complete."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    old = folder.with_name(f".old-{folder.name}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def restore_or_start(cfg: TrainConfig, plan: TrainPlan, run: TrainRun) -> None:
    """Load the checkpoint when resuming (RNG applied at the first batch); else clear a stale log."""
    log_path = cfg.output_dir / TRAIN_LOG
    if plan.resume_from is None:
        if run.accelerator.is_main_process:
            truncate_log(log_path, 0)
        return
    unwrapped = run.accelerator.unwrap_model(run.loss_module)
    global_batch_size = cfg.batch_size * run.accelerator.num_processes
    run.state = load_checkpoint(
        plan.resume_from,
        unwrapped,
        run.optimizer,
        run.scheduler,
        global_batch_size=global_batch_size,
        data=run.state.data,
    )
    run.resume_rng = read_rng_state(plan.resume_from)
    if run.accelerator.is_main_process:
        truncate_log(log_path, run.state.global_step)
    logger.warning(
        "resuming from %s (step %d, epoch %d)", plan.resume_from, run.state.global_step, run.state.epoch
    )


def build_train_run(
    cfg: TrainConfig, plan: TrainPlan, acc: Any, model: Any, processor: Any, cache: FeatureCache | None
) -> TrainRun:
    """Loaders (reading `cache` where filled), optimizer and scheduler, prepared by accelerate, for `fit`."""
    loss_module, train_loader, sampler, val_loader = build_loss_and_loaders(
        cfg, plan, model, processor, acc, cache
    )
    if cfg.compile:
        # In place, not torch.compile's OptimizedModule wrapper nor accelerate's dynamo plugin (which
        # wraps too): unwrap_model then still yields CaptionLoss, so checkpoint keys are unchanged.
        compiled = compile_for_training(loss_module, cfg)
        logger.info("torch.compile: %d module(s) compiled in place (%s)", compiled, cfg.compile_scope)
    optimizer = build_optimizer(cfg, loss_module, acc.device)
    loss_module, optimizer, train_loader = acc.prepare(loss_module, optimizer, train_loader)
    val_loader = acc.prepare(val_loader) if val_loader is not None else None
    if cache is not None and release_frozen_modules(cfg, plan, model, acc):
        logger.info("frozen %s released from %s after caching", frozen_names(plan.family), acc.device)
    total_steps = count_total_steps(cfg, len(train_loader))
    # The scheduler is stepped by hand once per optimizer step (not prepared): accelerate's wrapper
    # would step it once per process, which needs total steps scaled by the world size.
    scheduler = build_scheduler(cfg, optimizer.optimizer, total_steps)
    acc.init_trackers("altcap-train", config=flatten_for_trackers(cfg.model_dump(mode="json")))
    run = TrainRun(
        accelerator=acc,
        loss_module=loss_module,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        train_sampler=sampler,
        val_loader=val_loader,
        state=TrainState(
            seed=cfg.seed,
            global_batch_size=cfg.batch_size * acc.num_processes,
            data=describe_training_data(cfg.data.manifest, len(plan.train_examples), len(train_loader)),
        ),
        logger=None,
        output_dir=cfg.output_dir,
        total_steps=total_steps,
        grad_accum_steps=cfg.grad_accum_steps,
        max_grad_norm=cfg.optim.max_grad_norm,
        log_every_n_steps=cfg.log_every_n_steps,
        eval_every_n_steps=cfg.eval_every_n_steps,
        save_every_n_steps=cfg.save_every_n_steps,
        patience=cfg.early_stopping.patience,
        min_delta=cfg.early_stopping.min_delta,
        frozen_modules=frozen_submodules(model, plan.family),
        objective=plan.objective,
        prefetch_next_epoch=cfg.num_workers > 0,
        step_metrics=getattr(acc.unwrap_model(loss_module), "pop_mean_reward", None),
    )
    if cfg.keep_best:
        run.save_best = lambda: (
            acc.is_main_process and save_adapter(unwrap_peft(run), cfg.output_dir / "best")
        )
    restore_or_start(cfg, plan, run)
    run.logger = TrainLogger(acc, cfg.output_dir, total_steps, run.state.global_step, cfg.num_workers)
    return run


def build_loss_and_loaders(
    cfg: TrainConfig, plan: TrainPlan, model: Any, processor: Any, acc: Any, cache: Any
) -> tuple[Any, Any, Any, Any]:
    """The objective's loss module and its (train loader, train sampler, val loader or None)."""
    loss_module, collate = plan.objective.build_loss(cfg, plan, model, processor, cache)
    pin_memory = acc.device.type == "cuda"
    lengths = None
    if cfg.group_by_length:
        lengths = caption_lengths(processor.tokenizer, plan.train_examples, cfg.data.max_caption_tokens)
    train_loader, sampler = build_loader(
        plan.train_examples, collate, cfg.batch_size, cfg.seed, cfg.num_workers, True, pin_memory, lengths
    )
    val_loader = None
    if plan.val_examples:
        val_loader, _ = build_loader(
            plan.val_examples, collate, cfg.batch_size, cfg.seed, cfg.num_workers, False, pin_memory
        )
    return loss_module, train_loader, sampler, val_loader


def flatten_for_trackers(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted scalar hyper-parameters (TensorBoard's hparams take only scalars and strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten_for_trackers(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


def unwrap_peft(run: TrainRun) -> Any:
    """The PEFT model inside the (possibly DDP-wrapped) loss module."""
    return run.accelerator.unwrap_model(run.loss_module).model


def write_outputs(
    cfg: TrainConfig, plan: TrainPlan, run: TrainRun, processor: Any, timer: PhaseTimer, started: float
) -> None:
    """adapter/, config.yaml, loss_curves.png, optionally merged/, and provenance.json last, with the
    phase times and the wall time up to its writing (main process)."""
    out = cfg.output_dir
    with timer.phase("outputs"):
        model = unwrap_peft(run)
        save_adapter(model, out / "adapter")
        dump_config(cfg, out / "config.yaml")
        plan.objective.plot_curves(run.state, out)
        provenance = describe_run(cfg, plan, run, model)
        if cfg.merge:
            # Merging folds LoRA into the base weights in place, so it runs after the adapter is saved.
            merged = model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            processor.save_pretrained(out / "merged")
    provenance["phase_seconds"] = timer.rounded()
    provenance["wall_time_s"] = round(time.perf_counter() - started, 2)
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")


def describe_run(cfg: TrainConfig, plan: TrainPlan, run: TrainRun, model: Any) -> dict[str, Any]:
    """provenance.json's fields but the times (read before a merge folds the adapter away)."""
    state = run.state
    targets = model.peft_config["default"].target_modules
    return build_provenance(
        cfg,
        cfg.model.model_id,
        cfg.data.manifest,
        family=plan.family.name,
        adapter=str(cfg.output_dir / "adapter"),
        precision_used=plan.precision,
        feature_cache_used=plan.use_cache,
        total_steps=run.total_steps,
        final_step=state.global_step,
        epochs_completed=state.epoch,
        best_val_loss=state.best_val_loss,
        stopped_early=state.stopped_early,
        device=describe_device(run.accelerator),
        train_examples=len(plan.train_examples),
        val_examples=len(plan.val_examples),
        unreadable_images_skipped=[image.to_dict() for image in plan.unreadable_images],
        lora_targets=sorted(targets) if isinstance(targets, set) else targets,
        cuda_graphs=run.graphed_training.describe() if run.graphed_training is not None else None,
    )


def enable_graphed_training(plan: TrainPlan, model: Any) -> Any:
    """The family's CUDA-graph router over `model`'s training passes (train.cuda_graphs)."""
    try:
        return plan.family.graphed_training.enable(model)
    except ValueError as err:  # e.g. model.device=cpu on a GPU machine
        raise ConfigError([str(err)]) from err


def describe_device(accelerator: Any) -> str:
    """What trained, e.g. '1 x NVIDIA H100 80GB HBM3' or 'cpu' (the memo reports it as compute used)."""
    import torch

    device = accelerator.device
    if device.type == "cuda":
        return f"{accelerator.num_processes} x {torch.cuda.get_device_name(device)}"
    return f"{accelerator.num_processes} x {device.type}"


def run_train(cfg: TrainConfig) -> Path:
    """Validate the config, train, and write the run folder.

    Args:
        cfg: the resolved training config.

    Returns:
        The run folder (`cfg.output_dir`).

    Raises:
        ConfigError: every config / data / model problem, found before any training.
        TrainingDivergedError: NaN or inf loss (last good checkpoint kept).
        CheckpointError: a checkpoint could not be written, e.g. disk full (last good one kept).
    """
    from accelerate.utils import set_seed

    started = time.perf_counter()
    timer = PhaseTimer()
    with timer.phase("validate"):
        plan = validate_train_config(cfg)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    with timer.phase("load"):
        acc = build_accelerator(cfg, plan)
        for note in plan.notes:
            logger.warning(note)
        set_seed(cfg.seed)
        model, processor = load_train_model(cfg, plan, str(acc.device))
    cache = fill_feature_cache(cfg, plan, model, processor, acc, timer) if plan.use_cache else None
    with timer.phase("prepare"):
        run = build_train_run(cfg, plan, acc, model, processor, cache)
        if cfg.cuda_graphs:  # after the cache fill, whose passes need no gradient
            run.graphed_training = enable_graphed_training(plan, model)
    try:
        with timer.phase("fit"):
            fit(run)
        if acc.is_main_process:
            write_outputs(cfg, plan, run, processor, timer, started)
            logger.info(timer.describe())
        acc.wait_for_everyone()
    finally:
        # Last: accelerate's end_training also tears down the process group of a multi-process run.
        run.logger.close()
    return cfg.output_dir
