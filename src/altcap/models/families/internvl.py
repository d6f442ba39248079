"""InternVL 3 in transformers format (e.g. OpenGVLab/InternVL3-2B-hf): 448 px tiles plus a
thumbnail, ChatML template; `model.max_image_pixels` caps the number of tiles."""

from altcap.models.chat_vlm import register_chat_vlm

FAMILY = register_chat_vlm("internvl")
