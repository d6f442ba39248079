"""Aya Vision (e.g. CohereLabs/aya-vision-8b; gated): SigLIP tiles on a Cohere 2 decoder;
`model.max_image_pixels` caps the number of tiles."""

from altcap.models.chat_vlm import register_chat_vlm

FAMILY = register_chat_vlm("aya_vision")
