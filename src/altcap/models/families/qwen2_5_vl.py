"""Qwen2.5-VL (e.g. Qwen/Qwen2.5-VL-3B-Instruct): ChatML template, any image size.

The image becomes (height/28) x (width/28) tokens after 2x2 merging, so the pixel budget
(`model.max_image_pixels`, the processor's `max_pixels`) sets the sequence length; the model card
suggests 256*28*28 to 1280*28*28 pixels.
"""

from altcap.models.chat_vlm import register_chat_vlm
from altcap.models.registry import PackedVisionAttention

# Tower and merger (the projector) are both inside `visual`.
# The tower attends within packed images and windows (`cu_seqlens`): one call per layer, not one per span.
FAMILY = register_chat_vlm(
    "qwen2_5_vl", vision_parts=("model.visual",), packed_vision_attention=PackedVisionAttention()
)
