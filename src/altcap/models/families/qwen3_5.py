"""Qwen3.5 (natively multimodal, e.g. Qwen/Qwen3.5-4B): Qwen3-VL vision on a hybrid Gated-DeltaNet
decoder; ChatML template, thinking blocks dropped from captions."""

from altcap.models.chat_vlm import register_chat_vlm
from altcap.models.registry import PackedVisionAttention

# Tower and merger (the projector) are both inside `visual`.
# The tower attends within packed images (`cu_seqlens`): one call per layer, not one per span.
# No CUDA-graph decoding: its linear-attention layers keep host-side cache state a replay skips.
FAMILY = register_chat_vlm(
    "qwen3_5",
    vision_parts=("model.visual",),
    packed_vision_attention=PackedVisionAttention(),
    graphed_decoding=False,
)
