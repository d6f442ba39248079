"""Qwen3.5 (natively multimodal, e.g. Qwen/Qwen3.5-4B): Qwen3-VL vision on a hybrid Gated-DeltaNet
decoder; ChatML template, thinking blocks dropped from captions."""

from altcap.models.chat_vlm import register_chat_vlm

# Tower and merger (the projector) are both inside `visual`.
FAMILY = register_chat_vlm("qwen3_5", vision_parts=("model.visual",))
