"""Loading a chat VLM: weights (full or 4-bit), processor without torchvision where needed, the
image-size limits, and the load-time speed swaps (host rope index, Conv3d patch embeddings as one
product)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from altcap.models.patch_linear import linear_patch_embeds
from altcap.models.quantization import build_quantization_config
from altcap.models.rope_index import compute_rope_index_on_host

logger = logging.getLogger(__name__)


def load_chat_vlm_4bit(spec: Any) -> tuple[Any, Any]:
    """QLoRA: the same loader with NF4 weights and bf16 compute (CUDA + bitsandbytes)."""
    return load_chat_vlm(spec, quantization_config=build_quantization_config())


def load_chat_processor(spec: Any) -> Any:
    """The processor alone (train's first-batch check), built without torchvision where needed and
    set up as `load_chat_vlm` sets it, so the check sees the image tokens and limit training will."""
    from altcap.models.loading import read_model_config
    from altcap.models.processors import load_processor

    model_type = read_model_config(spec).model_type
    return apply_processor_limits(load_processor(spec.model_id, model_type, spec.trust_remote_code), spec)


def apply_processor_limits(processor: Any, spec: Any) -> Any:
    """`spec`'s image-size budget and `max_length` set on `processor` (in place); returns it."""
    from altcap.models.processors import apply_pixel_limits

    applied = apply_pixel_limits(processor, spec.max_image_pixels, spec.min_image_pixels)
    if spec.max_length is not None:
        processor.tokenizer.model_max_length = spec.max_length
    if applied:
        logger.info("image processor settings for %s: %s", spec.model_id, applied)
    return processor


def load_chat_vlm(spec: Any, quantization_config: Any = None) -> tuple[Any, Any]:
    """Model + processor for a `ModelConfig`, with its image-size limits applied.

    Args:
        spec: an `altcap.models.loading.ModelConfig` (model_id, dtype, device, max/min_image_pixels,
            max_length; `load_in_4bit` when present).
        quantization_config: a transformers quantization config (QLoRA); None = the spec's
            `load_in_4bit` (NF4 when true), else full weights.

    Returns:
        (model, processor).
    """
    from transformers import AutoModelForImageTextToText

    from altcap.models.loading import resolve_device, resolve_dtype
    from altcap.models.processors import load_processor

    device = resolve_device(spec.device)
    if quantization_config is None and getattr(spec, "load_in_4bit", False):
        quantization_config = build_quantization_config()
    dtype = torch.bfloat16 if quantization_config is not None else resolve_dtype(spec.dtype, device)
    model = AutoModelForImageTextToText.from_pretrained(
        spec.model_id,
        dtype=dtype,
        device_map={"": device},
        quantization_config=quantization_config,
        trust_remote_code=spec.trust_remote_code,
    )
    processor = load_processor(spec.model_id, model.config.model_type, spec.trust_remote_code)
    apply_processor_limits(processor, spec)
    compute_rope_index_on_host(model)
    linear_patch_embeds(model)
    return model, processor
