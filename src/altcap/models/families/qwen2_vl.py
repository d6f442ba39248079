"""Qwen2-VL (e.g. Qwen/Qwen2-VL-2B-Instruct): ChatML template, any image size (28 px per token
after merging; `model.max_image_pixels` maps onto the processor's `max_pixels`)."""

from altcap.models.chat_vlm import register_chat_vlm

# Tower and merger (the projector) are both inside `visual`.
FAMILY = register_chat_vlm("qwen2_vl", vision_parts=("model.visual",))
