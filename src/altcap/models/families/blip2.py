"""BLIP-2 (`Blip2ForConditionalGeneration`) with an OPT or Flan-T5 LM; the token layout and the code
it shares with InstructBLIP are in `altcap.models.query_tokens`.
"""

from __future__ import annotations

from typing import Any

import torch

from altcap.models.query_tokens import (
    QFORMER_LORA_TARGETS,
    build_query_token_inputs,
    cuda_graphs_problem,
    format_prompt,
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
    from transformers import Blip2ForConditionalGeneration

    return load_query_token_model(Blip2ForConditionalGeneration, spec, four_bit=four_bit)


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
        processor: the checkpoint's Blip2Processor.
        images: RGB PIL images (with_pixels=False: anything, only their count is used, since the
            number of image placeholders is the fixed num_query_tokens).
        prompts: instructions per image (None = DEFAULT_INSTRUCTION).
        captions: targets for training; None builds generation inputs.
        with_pixels: False skips the image processor (the loss then comes from cached features).

    Returns:
        Dict of CPU tensors: pixel_values (only with_pixels), input_ids, attention_mask (+ labels).
    """
    instructions = resolve_prompts(prompts, len(images), DEFAULT_INSTRUCTION)
    texts = [format_prompt(processor, instruction) for instruction in instructions]
    inputs = build_query_token_inputs(processor, texts, captions)
    if with_pixels:
        inputs["pixel_values"] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return inputs


def encode_images(model: Any, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Q-Former query outputs (vision tower + Q-Former are frozen, and the Q-Former ignores text here)."""
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
        query_output = run_query_former(model, image_embeds)
    return {"query_output": query_output}


def forward_from_features(
    model: Any, features: dict[str, torch.Tensor], inputs: dict[str, Any]
) -> torch.Tensor:
    """Caption loss from cached query outputs; equals `model(**inputs).loss`."""
    return forward_with_query_output(model, features["query_output"], inputs)


FAMILY = register_family(
    ModelFamily(
        name="blip2",
        hf_class="Blip2ForConditionalGeneration",
        model_types=("blip-2",),
        # OPT names its attention projections q_proj/k_proj/v_proj, T5 names them q/k/v.
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
            feature_keys=("query_output",),
        ),
        quantized=QuantizedLoading(load_4bit=load_4bit),
        graphed_decoding=GraphedDecoding(check=cuda_graphs_problem),
        frozen_part_lora=FrozenPartLora(targets=QFORMER_LORA_TARGETS),
    )
)
