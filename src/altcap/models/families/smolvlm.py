"""SmolVLM / SmolVLM2 (e.g. HuggingFaceTB/SmolVLM2-2.2B-Instruct): Idefics3 layout on a
SmolLM2 decoder; images are split into 512 px tiles plus a global view, and `model.max_image_pixels`
caps the resized longest edge (whole tiles). Needs `num2words` (the processor imports it)."""

from altcap.models.chat_vlm import register_chat_vlm

# The decoder sits at `model.text_model`, not `language_model`.
FAMILY = register_chat_vlm(
    "smolvlm", lora_scope="text_model", vision_parts=("model.vision_model", "model.connector")
)
