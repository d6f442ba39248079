"""Gemma 4 (e.g. google/gemma-4-E2B-it; gated: accept the licence, then `hf auth login`): variable
image resolution in soft-token budgets (70-1120 per image); the processor also carries an audio
feature extractor, unused here."""

from altcap.models.chat_vlm import register_chat_vlm

# Its language model gets per-layer-type masks: no CUDA-graph training.
FAMILY = register_chat_vlm(
    "gemma4", vision_parts=("model.vision_tower", "model.embed_vision"), graphed_training=False
)
