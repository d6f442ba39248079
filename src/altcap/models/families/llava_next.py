"""LLaVA-1.6 / LLaVA-NeXT (`LlavaNextForConditionalGeneration`, e.g. llava-hf/llava-v1.6-mistral-7b-hf).

The prompt is the checkpoint's chat template (user turn = image + instruction, then the assistant
turn opener); the processor tiles each image at any resolution and expands `<image>` into as many
placeholders as that image has visual tokens, so the prompt length differs per image. Training
text is `prompt caption</s>` and the labels are the last `len(caption tokens) + 1` real tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from altcap.models.loading import load_pretrained
from altcap.models.registry import (
    DEFAULT_INSTRUCTION,
    FeatureCache,
    ModelFamily,
    QuantizedLoading,
    register_family,
)
from altcap.models.text_inputs import (
    IGNORE_INDEX,
    embed_with_image_features,
    encode_prompt_and_caption,
    generate_new_text,
    join_prompt_and_caption,
    read_image_size,
    resolve_prompts,
)


def load(spec: Any, *, four_bit: bool = False) -> tuple[Any, Any]:
    """`from_pretrained` model + processor on the configured device/dtype (4-bit NF4 with four_bit)."""
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    return load_pretrained(LlavaNextForConditionalGeneration, AutoProcessor, spec, four_bit=four_bit)


def load_4bit(spec: Any) -> tuple[Any, Any]:
    """QLoRA's base model: `load` with the weights in 4-bit NF4."""
    return load(spec, four_bit=True)


def format_prompt(processor: Any, instruction: str) -> str:
    """The chat-template prompt for one image + instruction, ending where the answer starts."""
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)


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
        processor: the checkpoint's LlavaNextProcessor (with a chat template).
        images: RGB PIL images (any size; tiled by the processor). With with_pixels=False also
            image paths or (height, width) pairs: only the size is read, from the file header.
        prompts: instructions per image (None = DEFAULT_INSTRUCTION).
        captions: targets for training; None builds (left-padded) generation inputs.
        with_pixels: False skips the image processor (the loss then comes from cached features).

    Returns:
        Dict of CPU tensors: pixel_values (only with_pixels), image_sizes, input_ids,
        attention_mask (+ labels).
    """
    instructions = resolve_prompts(prompts, len(images), DEFAULT_INSTRUCTION)
    texts = [format_prompt(processor, instruction) for instruction in instructions]
    side = "left" if captions is None else "right"
    if captions is not None:
        tokenizer = processor.tokenizer
        pairs = list(zip(texts, captions, strict=True))
        target_lengths = [len(encode_prompt_and_caption(tokenizer, t, c)[1]) + 1 for t, c in pairs]
        texts = [join_prompt_and_caption(t, c) + tokenizer.eos_token for t, c in pairs]
    if with_pixels:
        inputs = processor(images=images, text=texts, padding=True, padding_side=side, return_tensors="pt")
        inputs = dict(inputs)
    else:
        inputs = build_text_inputs(processor, [read_image_size(image) for image in images], texts, side)
    if captions is not None:
        inputs["labels"] = mask_all_but_tail(inputs["input_ids"], inputs["attention_mask"], target_lengths)
    return inputs


def build_text_inputs(
    processor: Any, image_sizes: list[tuple[int, int]], texts: list[str], padding_side: str
) -> dict[str, torch.Tensor]:
    """What the processor returns minus pixel_values, from image sizes alone.

    An image's placeholder count depends only on its size and the tiling settings, so the
    processor's own counting rule is applied to the size instead of to processed pixels.

    Args:
        processor: the LlavaNextProcessor.
        image_sizes: (height, width) per image, as the processor's `image_sizes`.
        texts: one prompt per image, each with one image token.
        padding_side: "right" for training, "left" for generation.

    Returns:
        image_sizes, input_ids, attention_mask (CPU tensors).
    """
    tile_height, tile_width = _tile_size_px(processor.image_processor)
    expanded = []
    for (height, width), text in zip(image_sizes, texts, strict=True):
        # The same count LlavaNextProcessor.replace_image_token computes from the processed pixels.
        count = processor._get_number_of_features(height, width, tile_height, tile_width)
        count -= processor.vision_feature_select_strategy == "default"
        expanded.append(text.replace(processor.image_token, processor.image_token * count, 1))
    tokens = processor.tokenizer(expanded, padding=True, padding_side=padding_side, return_tensors="pt")
    return {
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
        "image_sizes": torch.tensor(image_sizes, dtype=torch.long),
    }


def _tile_size_px(image_processor: Any) -> tuple[int, int]:
    # Each tile is resized to `size`, then center-cropped to `crop_size` (LlavaNextImageProcessor).
    crop, size = image_processor.crop_size, image_processor.size
    if image_processor.do_center_crop and crop and crop.get("height"):
        return crop["height"], crop["width"]
    if size.get("height"):
        return size["height"], size["width"]
    return size["shortest_edge"], size["shortest_edge"]


def mask_all_but_tail(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, tail_lengths: list[int]
) -> torch.Tensor:
    """Labels that keep only the last `tail_lengths[i]` real tokens of each right-padded row."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, tail in enumerate(tail_lengths):
        real_length = int(attention_mask[row].sum())
        labels[row, real_length - tail : real_length] = input_ids[row, real_length - tail : real_length]
    return labels


def _num_tiles(base: Any, image_sizes: torch.Tensor) -> list[int]:
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    config = base.config
    return [
        image_size_to_num_patches(size, config.image_grid_pinpoints, config.vision_config.image_size)
        for size in image_sizes
    ]


def encode_images(model: Any, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Selected vision-tower features per tile, [batch, max_tiles, patches, hidden] (zero rows pad
    images with fewer tiles; `forward_from_features` reads only each image's own tiles)."""
    base = _unwrap(model)
    config = base.config
    tiles = _num_tiles(base, inputs["image_sizes"])
    pixels = torch.cat([p[:n] for p, n in zip(inputs["pixel_values"], tiles, strict=True)], dim=0)
    with torch.no_grad():
        hidden = base.model.vision_tower(pixels, output_hidden_states=True).hidden_states[
            config.vision_feature_layer
        ]
    if config.vision_feature_select_strategy == "default":
        hidden = hidden[:, 1:]  # drop CLS, as LlavaNextModel.get_image_features does
    padded = hidden.new_zeros((len(tiles), max(tiles), *hidden.shape[1:]))
    for row, chunk in enumerate(torch.split(hidden, tiles, dim=0)):
        padded[row, : chunk.shape[0]] = chunk
    return {"vision_features": padded}


def forward_from_features(
    model: Any, features: dict[str, torch.Tensor], inputs: dict[str, Any]
) -> torch.Tensor:
    """Caption loss from cached vision features; equals `model(**inputs).loss`."""
    inner = _unwrap(model).model
    tiles = _num_tiles(_unwrap(model), inputs["image_sizes"])
    selected = torch.cat([f[:n] for f, n in zip(features["vision_features"], tiles, strict=True)], dim=0)
    projected = torch.split(inner.multi_modal_projector(selected), tiles, dim=0)
    packed, _ = inner.pack_image_features(
        projected,
        inputs["image_sizes"],
        vision_feature_select_strategy=inner.config.vision_feature_select_strategy,
        image_newline=inner.image_newline,
    )
    # Placeholders filled here and passed as inputs_embeds (pixel_values=None): the one way to hand
    # LLaVA-NeXT precomputed image features that works in every transformers 5 release.
    image_features = torch.cat(packed, dim=0)
    embeds = embed_with_image_features(
        model, inputs["input_ids"], image_features, inner.config.image_token_id
    )
    # No KV cache: a loss never reads it, and its per-layer state makes torch.compile recompile each layer.
    lm_inputs = {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"], "use_cache": False}
    return model(**lm_inputs, labels=inputs["labels"]).loss


def _unwrap(model: Any) -> Any:
    # LoRA layers are injected in place, so the unwrapped model runs them too.
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def generate(model: Any, processor: Any, inputs: dict[str, Any], generation: dict[str, Any]) -> list[str]:
    """Batched generation; decodes only the tokens after the (left-padded) prompt."""
    return generate_new_text(model, processor.tokenizer, inputs, generation, inputs["input_ids"].shape[1])


FAMILY = register_family(
    ModelFamily(
        name="llava_next",
        hf_class="LlavaNextForConditionalGeneration",
        model_types=("llava_next",),
        default_lora_targets=("q_proj", "k_proj", "v_proj"),
        load=load,
        build_inputs=build_inputs,
        generate=generate,
        # The CLIP vision tower also has q_proj/k_proj/v_proj; LoRA belongs on the LM only.
        lora_scope="language_model",
        follows_instructions=True,
        inputs_shaped_by_image_size=True,
        feature_cache=FeatureCache(
            encode_images=encode_images,
            forward_from_features=forward_from_features,
            frozen_modules=("model.vision_tower",),
            feature_keys=("vision_features",),
        ),
        quantized=QuantizedLoading(load_4bit=load_4bit),
    )
)
