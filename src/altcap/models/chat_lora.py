"""Where LoRA goes in a chat VLM: the language model's attention and MLP linears by default,
optionally the projector and the vision tower, found by module name on the loaded model."""

from __future__ import annotations

from typing import Any

# Leaf names of the Linear layers in the language models these checkpoints use (Qwen2/3, Llama,
# Gemma 2/3/4, Cohere, GLM-4, BART, Phi): LoRA adapts attention and MLP; `apply_lora` keeps the
# names the model has, under the language-model scope only, so the vision tower stays untouched.
LANGUAGE_LINEAR_LEAVES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "out_proj",
    "qkv_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "gate_up_proj",
    "fc1",
    "fc2",
)
LANGUAGE_SCOPE = "language_model"
# Where projector and vision tower sit in transformers 5 chat VLMs (first match wins).
PROJECTOR_NAMES = ("multi_modal_projector", "mm_projector", "connector", "visual.merger", "embed_vision")
VISION_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder")


def find_lora_layers(model: Any, parts: tuple[str, ...] = ("language",)) -> list[str]:
    """Full names of the Linear layers LoRA should wrap in the chosen parts of a chat VLM.

    Args:
        model: the loaded model (unwrapped).
        parts: any of "language" (attention + MLP linears, the default), "projector", "vision".

    Returns:
        Module names for PEFT's `target_modules` (full names, so a vision `q_proj` is never hit
        by a language-model target of the same leaf name).
    """
    from altcap.models.loading import linear_layer_names

    prefixes = {
        "language": (LANGUAGE_SCOPE, "text_model"),
        "projector": PROJECTOR_NAMES,
        "vision": VISION_NAMES,
    }
    names = []
    for name in linear_layer_names(model):
        dotted = f".{name}."
        part = next(
            (p for p in ("projector", "vision", "language") if any(f".{x}." in dotted for x in prefixes[p])),
            "",
        )
        leaf_ok = part != "language" or name.rsplit(".", 1)[-1] in LANGUAGE_LINEAR_LEAVES
        if part in parts and leaf_ok:
            names.append(name)
    return names
