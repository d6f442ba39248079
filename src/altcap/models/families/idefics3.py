"""Idefics3 (e.g. HuggingFaceM4/Idefics3-8B-Llama3): tiles of 364 px plus a global view;
`model.max_image_pixels` caps the resized longest edge. Answers end with `<end_of_utterance>`."""

from altcap.models.chat_vlm import register_chat_vlm

# The decoder sits at `model.text_model`, not `language_model`.
FAMILY = register_chat_vlm(
    "idefics3", lora_scope="text_model", vision_parts=("model.vision_model", "model.connector")
)
