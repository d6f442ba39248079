"""Qwen2-VL (e.g. Qwen/Qwen2-VL-2B-Instruct): ChatML template, any image size (28 px per token
after merging; `model.max_image_pixels` maps onto the processor's `max_pixels`)."""

from altcap.models.chat_vlm import register_chat_vlm
from altcap.models.registry import PackedVisionAttention

# Tower and merger (the projector) are both inside `visual`.
# The tower attends within packed images (`cu_seqlens`): one call per layer, not one per span.
FAMILY = register_chat_vlm(
    "qwen2_vl", vision_parts=("model.visual",), packed_vision_attention=PackedVisionAttention()
)
