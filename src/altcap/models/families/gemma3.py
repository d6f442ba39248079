"""Gemma 3 (e.g. google/gemma-3-4b-it; gated: accept the licence on the hub, then `hf auth login`).

One 896 px SigLIP view per image (256 tokens); pan-and-scan crops stay off, so
`model.max_image_pixels` does not apply. The answer ends with `<end_of_turn>`."""

from altcap.models.chat_vlm import register_chat_vlm

FAMILY = register_chat_vlm("gemma3", graphed_training=False)  # per-layer-type masks reach its LM
