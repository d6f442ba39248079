"""InstructBLIP (`InstructBlipForConditionalGeneration`, Vicuna/Llama or Flan-T5 LM).

Same token layout as BLIP-2 (see query_tokens.py), with the instruction used verbatim (the model is
instruction-tuned) and also fed, through its own BERT tokenizer, to the Q-Former.

Feature cache: only the vision tower is cached. The Q-Former cross-attends to the image *and*
reads the instruction, so its output differs per prompt; caching it would silently reuse one
prompt's visual tokens for another. `forward_from_features` therefore reruns the (frozen, small)
Q-Former on the cached vision features.
"""

from __future__ import annotations

from typing import Any

import torch

from altcap.models.query_tokens import (
    QFORMER_LORA_TARGETS,
    build_query_token_inputs,
    cuda_graphs_problem,
    forward_with_query_output,
    generate,
    load_query_token_model,
    run_query_former,
)
from altcap.models.registry import (
    DEFAULT_INSTRUCTION,
    FeatureCache,
    FrozenPartLora,
    GraphedDecoding,
    ModelFamily,
    QuantizedLoading,
    register_family,
)
from altcap.models.text_inputs import resolve_prompts


def load(spec: Any, *, four_bit: bool = False) -> tuple[Any, Any]:
    """`from_pretrained` model + processor (4-bit NF4 with four_bit); the processor remembers whether
    the LM is encoder-decoder."""
    from transformers import InstructBlipForConditionalGeneration

    return load_query_token_model(InstructBlipForConditionalGeneration, spec, four_bit=four_bit)


def load_4bit(spec: Any) -> tuple[Any, Any]:
    """QLoRA's base model: `load` with the weights in 4-bit NF4."""
    return load(spec, four_bit=True)


def build_inputs(
    processor: Any,
    images: list[Any],
    prompts: list[str | None] | None = None,
    captions: list[str] | None = None,
    *,
    with_pixels: bool = True,
) -> dict[str, Any]:
    """Model inputs for a batch; with captions also labels (caption tokens + EOS only).

    Args:
        processor: the checkpoint's InstructBlipProcessor.
        images: RGB PIL images (with_pixels=False: anything, only their count is used).
        prompts: instructions per image (None = DEFAULT_INSTRUCTION).
        captions: targets for training; None builds generation inputs.
        with_pixels: False skips the image processor; the Q-Former tokens are still built, since
            `forward_from_features` reruns the Q-Former on the instruction.

    Returns:
        Dict of CPU tensors: pixel_values (only with_pixels), qformer_input_ids,
        qformer_attention_mask, input_ids, attention_mask (+ labels).
    """
    instructions = resolve_prompts(prompts, len(images), DEFAULT_INSTRUCTION)
    inputs = build_query_token_inputs(processor, instructions, captions)
    qformer = processor.qformer_tokenizer(instructions, padding=True, return_tensors="pt")
    inputs["qformer_input_ids"] = qformer["input_ids"]
    inputs["qformer_attention_mask"] = qformer["attention_mask"]
    if with_pixels:
        inputs["pixel_values"] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return inputs


def encode_images(model: Any, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The frozen vision tower's output only (the Q-Former depends on the instruction; see module doc)."""
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
    return {"image_embeds": image_embeds}


def run_qformer(model: Any, image_embeds: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
    """Q-Former query outputs for vision features + the instruction tokens (as the model's own forward)."""
    text_ids, text_mask = inputs["qformer_input_ids"], inputs["qformer_attention_mask"]
    return run_query_former(model, image_embeds, text_ids, text_mask)


def forward_from_features(
    model: Any, features: dict[str, torch.Tensor], inputs: dict[str, Any]
) -> torch.Tensor:
    """Caption loss from cached vision features; equals `model(**inputs).loss`."""
    query_output = run_qformer(model, features["image_embeds"], inputs)
    return forward_with_query_output(model, query_output, inputs)


FAMILY = register_family(
    ModelFamily(
        name="instructblip",
        hf_class="InstructBlipForConditionalGeneration",
        model_types=("instructblip",),
        # Vicuna/Llama name them q_proj/k_proj/v_proj, Flan-T5 q/k/v.
        default_lora_targets=("q_proj", "k_proj", "v_proj", "q", "k", "v"),
        load=load,
        build_inputs=build_inputs,
        generate=generate,
        lora_scope="language_model",
        follows_instructions=True,
        feature_cache=FeatureCache(
            encode_images=encode_images,
            forward_from_features=forward_from_features,
            frozen_modules=("vision_model", "query_tokens", "qformer"),
            feature_keys=("image_embeds",),
            cached_modules=("vision_model",),
        ),
        quantized=QuantizedLoading(load_4bit=load_4bit),
        graphed_decoding=GraphedDecoding(check=cuda_graphs_problem),
        frozen_part_lora=FrozenPartLora(targets=QFORMER_LORA_TARGETS),
    )
)
