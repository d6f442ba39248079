"""LLaVA-OneVision (e.g. llava-hf/llava-onevision-qwen2-0.5b-ov-hf): SigLIP, any-resolution
tiles, Qwen2 ChatML template."""

from altcap.models.chat_vlm import register_chat_vlm

FAMILY = register_chat_vlm("llava_onevision")
