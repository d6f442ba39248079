"""LLaVA 1.5 and its relatives in llava-hf format (e.g. llava-hf/llava-1.5-7b-hf): one CLIP view,
"USER: <image> ... ASSISTANT:" template; answers end with `</s>`."""

from altcap.models.chat_vlm import register_chat_vlm

FAMILY = register_chat_vlm("llava")
