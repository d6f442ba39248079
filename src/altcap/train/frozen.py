"""The frozen part of a model (vision tower, Q-Former): finding it, caching its outputs once, and
freeing it from the accelerator afterwards."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import torch

from altcap.models.registry import ModelFamily
from altcap.train.cache import DEFAULT_CACHE_DIR, FeatureCache, FeatureEncoder, build_model_fingerprint
from altcap.train.config import TrainConfig
from altcap.train.phases import PhaseTimer
from altcap.train.validate import TrainPlan

logger = logging.getLogger(__name__)


def frozen_names(family: ModelFamily) -> tuple[str, ...]:
    """The family's frozen module names (its feature cache's), or none without that capability."""
    return family.feature_cache.frozen_modules if family.feature_cache is not None else ()


def frozen_submodules(model: Any, family: ModelFamily) -> list[torch.nn.Module]:
    """The family's frozen modules (vision tower, Q-Former) of a PEFT-wrapped model."""
    found = [find_frozen_part(model, name) for name in frozen_names(family)]
    return [m for m in found if isinstance(m, torch.nn.Module)]


def find_frozen_part(model: Any, dotted_name: str) -> Any:
    """A frozen module or bare parameter by dotted path (LLaVA's is `model.vision_tower`), or None."""
    part = model.get_base_model()
    for name in dotted_name.split("."):
        part = getattr(part, name, None)
    return part


def frozen_tensors(model: Any, family: ModelFamily) -> dict[str, torch.Tensor]:
    """Weights of the frozen part by name (modules and bare parameters such as BLIP-2's query_tokens)."""
    tensors: dict[str, torch.Tensor] = {}
    for name in frozen_names(family):
        part = find_frozen_part(model, name)
        if isinstance(part, torch.nn.Module):
            tensors.update({f"{name}.{k}": v for k, v in part.state_dict().items()})
        elif isinstance(part, torch.Tensor):
            tensors[name] = part
    return tensors


def fill_feature_cache(
    cfg: TrainConfig, plan: TrainPlan, model: Any, processor: Any, acc: Any, timer: PhaseTimer
) -> FeatureCache:
    """Compute (main process) the frozen features of every train/val image not cached yet.

    Args:
        cfg, plan: the run's config and validated plan.
        model, processor: the LoRA-wrapped model and its processor.
        acc: the Accelerator.
        timer: times the phases `cache_fingerprint` and `cache_encode`.

    Returns:
        The filled cache.
    """
    family = plan.family
    assert family is not None and family.feature_cache is not None, "validate_train_config decides the cache"
    encode_images, device = family.feature_cache.encode_images, acc.device
    with timer.phase("cache_fingerprint"):
        config = getattr(model.get_base_model(), "config", None)  # a non-transformers model may have none
        tensors = frozen_tensors(model, family)
        fingerprint = build_model_fingerprint(cfg.model.model_id, config, tensors, processor, plan.precision)
    cache = FeatureCache(cfg.feature_cache.dir or DEFAULT_CACHE_DIR, fingerprint)

    @torch.no_grad()
    def encode(inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        # non_blocking: inputs come pinned on CUDA, so the copy overlaps; on the CPU it is a no-op.
        moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in inputs.items()}
        with acc.autocast():
            return encode_images(model, moved)

    encoder = FeatureEncoder(partial(prepare_frozen_inputs, family, processor), encode)
    with timer.phase("cache_encode"):
        if acc.is_main_process:
            for module in frozen_submodules(model, family):
                module.eval()
            examples = plan.train_examples + plan.val_examples
            # Workers pay where the device encodes while the CPU waits; on a CPU device they only
            # compete with the encode (tiny Qwen2.5-VL, 64 images on 2 cores: 1.5 s -> 2.3 s).
            workers = cfg.num_workers if acc.device.type != "cpu" else 0
            pin_memory = acc.device.type == "cuda"
            batch_size = cfg.feature_cache.batch_size or cfg.batch_size
            computed = cache.fill(examples, encoder, batch_size, True, workers, pin_memory, timer)
            logger.info("feature cache %s: %d entries computed", cache.folder, computed)
        acc.wait_for_everyone()
    return cache


def prepare_frozen_inputs(
    family: ModelFamily, processor: Any, images: list[Any], prompts: list[str | None]
) -> dict[str, Any]:
    """The frozen part's CPU inputs for a batch of images (no captions: the cache needs none)."""
    return dict(family.build_inputs(processor, images, prompts, None))


def free_cached_part(model: Any, family: ModelFamily) -> None:
    """Move the modules whose outputs the feature cache holds to the meta device (no memory)."""
    for name in family.feature_cache.cached_part if family.feature_cache is not None else ():
        part = find_frozen_part(model, name)
        if isinstance(part, torch.nn.Module):
            part.to("meta")


def release_frozen_modules(cfg: TrainConfig, plan: TrainPlan, model: Any, acc: Any) -> bool:
    """Move the frozen vision tower / Q-Former to the meta device once their outputs are cached.

    Training from the cache never runs them again, and on BLIP-2 they are a quarter of the weights:
    freeing them lets the language model train on a 12-16 GB card. Single process only (DDP
    re-broadcasts module buffers every step; DeepSpeed / FSDP shard parameters themselves), and
    kept with `merge`, which needs every weight. Called after `accelerate.prepare`, which moves
    the whole model to the device.

    Returns:
        True when the modules were released.
    """
    # bitsandbytes' 4-bit weights cannot move to the meta device; they are small anyway.
    quantized = getattr(model.get_base_model(), "hf_quantizer", None) is not None
    if cfg.merge or acc.num_processes > 1 or quantized:
        return False
    free_cached_part(model, plan.family)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        # The logged peak then measures training itself, not the one-off cache fill.
        torch.cuda.reset_peak_memory_stats()
    return True
