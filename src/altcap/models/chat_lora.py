"""Where LoRA goes in a chat VLM: the language model's attention and MLP linears by default,
optionally the projector and the vision tower, found by module name on the loaded model."""

from __future__ import annotations

from typing import Any

from altcap.models.registry import PartLora

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


def find_part_layers(model: Any, part: str) -> list[str]:
    """The `PartLora` capability of chat VLMs: full Linear names of the "projector" or "vision" part."""
    return find_lora_layers(model, (part,))


CHAT_PART_LORA = PartLora(find_layers=find_part_layers)
# The config field that asks for each part (named in errors).
LORA_PART_FIELDS = {"projector": "lora.adapt_projector", "vision": "lora.adapt_vision"}


def add_part_targets(model: Any, family: Any, targets: list[str], parts: list[str]) -> list[str]:
    """LoRA targets as full module names: the language targets under the family's scope, plus
    every Linear layer of the requested parts (searched in the whole model, scope "").

    Full names keep a vision `q_proj` out when only the language model's `q_proj` is asked for.

    Args:
        model: the unwrapped model (weightless copies work too).
        family: its `ModelFamily` (`lora_scope`, `part_lora`).
        targets: leaf names for the language model (a name it lacks is kept, so the later match
            still reports it as a typo).
        parts: any of "projector", "vision".

    Returns:
        Target names for `apply_lora(..., scope="")`.

    Raises:
        ModelLoadError: naming the field when the family or this model has no such part.
    """
    from altcap.models.loading import ModelLoadError, linear_layer_names

    language = linear_layer_names(model, family.lora_scope)
    leaves = {name.rsplit(".", 1)[-1] for name in language}
    names = [name for name in language if name.rsplit(".", 1)[-1] in targets]
    names += [t for t in targets if t not in leaves]
    for part in parts:
        found = family.part_lora.find_layers(model, part) if family.part_lora is not None else []
        if not found:
            raise ModelLoadError(
                f"{LORA_PART_FIELDS[part]}=true: no {part} Linear layer found in {type(model).__name__} "
                f"(family {family.name!r}); set {LORA_PART_FIELDS[part]}=false"
            )
        names += [name for name in found if name not in names]
    return names
