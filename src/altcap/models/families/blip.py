"""BLIP (`BlipForConditionalGeneration`, e.g. Salesforce/blip-image-captioning-base/large).

Token layout: `[DEC] prompt caption [SEP]`. BLIP's `generate` overwrites the first token with the
decoder BOS ([DEC]) and drops the last one, so generation inputs are `[DEC] prompt [SEP]`; training
uses the same BOS so the loss trains the sequence `generate` will see.
"""

from __future__ import annotations

from typing import Any

import torch

from altcap.models.loading import load_pretrained
from altcap.models.registry import FeatureCache, ModelFamily, QuantizedLoading, register_family
from altcap.models.text_inputs import build_caption_batch, generate_new_text, pad_sequences, resolve_prompts

# BLIP was pretrained for plain captioning (optionally after a short prefix such as "a picture of"),
# not for following instructions, so its default prompt is empty; a record's prompt is a prefix.
BLIP_DEFAULT_PROMPT = ""


def load(spec: Any, *, four_bit: bool = False) -> tuple[Any, Any]:
    """`from_pretrained` model + processor on the configured device/dtype (4-bit NF4 with four_bit)."""
    from transformers import AutoProcessor, BlipForConditionalGeneration

    return load_pretrained(BlipForConditionalGeneration, AutoProcessor, spec, four_bit=four_bit)


def load_4bit(spec: Any) -> tuple[Any, Any]:
    """QLoRA's base model: `load` with the weights in 4-bit NF4."""
    return load(spec, four_bit=True)


def _special_ids(processor: Any) -> tuple[int, int, int]:
    tokenizer = processor.tokenizer
    bos_id = (
        tokenizer.convert_tokens_to_ids("[DEC]")
        if "[DEC]" in tokenizer.get_vocab()
        else tokenizer.bos_token_id
    )
    return bos_id, tokenizer.sep_token_id, tokenizer.pad_token_id


def build_inputs(
    processor: Any,
    images: list[Any],
    prompts: list[str | None] | None = None,
    captions: list[str] | None = None,
    *,
    with_pixels: bool = True,
) -> dict[str, Any]:
    """Pixel values + token ids; with captions also labels (only caption tokens and [SEP] learned).

    Args:
        processor: the checkpoint's BlipProcessor.
        images: RGB PIL images (with_pixels=False: anything, only their count is used).
        prompts: text prefixes per image (None = no prefix).
        captions: target captions for training; None builds generation inputs.
        with_pixels: False skips the image processor (the loss then comes from cached features).

    Returns:
        Dict of CPU tensors: pixel_values (only with_pixels), input_ids, attention_mask (+ labels).
    """
    bos_id, sep_id, pad_id = _special_ids(processor)
    texts = resolve_prompts(prompts, len(images), BLIP_DEFAULT_PROMPT)
    pixels = {}
    if with_pixels:
        pixels["pixel_values"] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    if captions is None:
        rows = [[bos_id, *_encode_prompt(processor, t), sep_id] for t in texts]
        input_ids, attention_mask = pad_sequences(rows, pad_id, side="left")
        return {**pixels, "input_ids": input_ids, "attention_mask": attention_mask}
    return {**pixels, **build_caption_batch(processor.tokenizer, [bos_id], texts, captions, sep_id, pad_id)}


def _encode_prompt(processor: Any, text: str) -> list[int]:
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_images(model: Any, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The frozen vision tower's patch embeddings (what the text decoder cross-attends to)."""
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
    return {"image_embeds": image_embeds}


def forward_from_features(
    model: Any, features: dict[str, torch.Tensor], inputs: dict[str, Any]
) -> torch.Tensor:
    """Caption loss from cached vision features; equals `model(**inputs).loss`."""
    outputs = model.text_decoder(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        encoder_hidden_states=features["image_embeds"],
        labels=inputs["labels"],
        reduction="mean",
    )
    return outputs.loss


def generate(model: Any, processor: Any, inputs: dict[str, Any], generation: dict[str, Any]) -> list[str]:
    """Batched generation; returns only the newly generated text per image."""
    # BLIP returns the prompt (minus its dropped last token) followed by the new tokens.
    prompt_length = inputs["input_ids"].shape[1] - 1
    return generate_new_text(model, processor.tokenizer, inputs, generation, prompt_length)


FAMILY = register_family(
    ModelFamily(
        name="blip",
        hf_class="BlipForConditionalGeneration",
        model_types=("blip",),
        default_lora_targets=("query", "key", "value"),
        load=load,
        build_inputs=build_inputs,
        generate=generate,
        lora_scope="text_decoder",
        feature_cache=FeatureCache(
            encode_images=encode_images,
            forward_from_features=forward_from_features,
            frozen_modules=("vision_model",),
            feature_keys=("image_embeds",),
        ),
        quantized=QuantizedLoading(load_4bit=load_4bit),
    )
)
