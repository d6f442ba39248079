"""Qwen3-VL (e.g. Qwen/Qwen3-VL-4B-Instruct): ChatML template, 32 px per image token after
merging (patch 16); Thinking checkpoints open with a `<think>` block, which captions drop."""

from altcap.models.chat_vlm import register_chat_vlm
from altcap.models.registry import PackedVisionAttention

# Tower and merger (the projector) are both inside `visual`.
# The tower attends within packed images (`cu_seqlens`): one call per layer, not one per span.
# Its language model also takes the deepstack features: no CUDA-graph training.
FAMILY = register_chat_vlm(
    "qwen3_vl",
    vision_parts=("model.visual",),
    packed_vision_attention=PackedVisionAttention(),
    graphed_training=False,
)
