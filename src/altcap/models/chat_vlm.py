"""One family builder for every chat vision-language model transformers loads with
`AutoModelForImageTextToText` (Qwen-VL, Gemma 3/4, SmolVLM, InternVL, LLaVA-OneVision, ...).

The prompt is the checkpoint's own chat template: one user turn holding the image and the
record's instruction, then the assistant turn. Training text is that prompt, whatever the template
puts before the answer, the caption and the template's end-of-turn token; the labels keep only the
caption tokens and that end token (what the model must learn to write, and to stop). Image tokens
and the prompt are never cut: past `max_length` only caption tokens go; a prompt alone too long is
an error naming the row and the counts.

Families whose text is not a chat (PaliGemma's prefix/suffix, Florence-2's task prompts) pass their
own `TextFormat`; loading, LoRA targets, generation and output cleaning stay generic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from altcap.models.caption_loss import caption_loss
from altcap.models.chat_features import build_chat_feature_cache, without_pixels
from altcap.models.chat_loading import load_chat_processor, load_chat_vlm, load_chat_vlm_4bit
from altcap.models.chat_lora import CHAT_PART_LORA, LANGUAGE_LINEAR_LEAVES, LANGUAGE_SCOPE
from altcap.models.graphed_chat_decoding import chat_graphs_problem, generate_with_chat_graphs
from altcap.models.graphed_chat_training import enable_graphed_training
from altcap.models.image_token_splices import blank_images, build_without_pixels
from altcap.models.registry import (
    DEFAULT_INSTRUCTION,
    GraphedDecoding,
    GraphedTraining,
    ModelFamily,
    PackedVisionAttention,
    QuantizedLoading,
    register_family,
)
from altcap.models.text_inputs import IGNORE_INDEX, resolve_prompts
from altcap.models.vision_attention import with_vision_attention

logger = logging.getLogger(__name__)
SEQUENCE_TOO_LONG_WARNING = "sequence-length-is-longer-than-the-specified-maximum"

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


@dataclass(frozen=True)
class TextFormat:
    """How one family turns (images, instructions, captions) into model inputs.

    `build_inputs(processor, images, instructions, captions, max_length)` returns CPU tensors
    (labels with captions, left-padded generation inputs without); `prompt_length(inputs)` says
    how many leading positions of `generate`'s output echo the prompt (0 for encoder-decoders).
    `build_text_inputs` (same arguments; images may be files or sizes) builds the same tensors
    without pixels and without processing the images; None = `build_inputs` on blank images of
    the same sizes, its pixels dropped.
    """

    build_inputs: Callable[..., dict[str, Any]]
    prompt_length: Callable[[dict[str, Any]], int]
    default_instruction: str = DEFAULT_INSTRUCTION
    build_text_inputs: Callable[..., dict[str, Any]] | None = None


def render_turns(processor: Any, instruction: str, caption: str | None) -> tuple[str, str, str]:
    """The chat-template text around a caption.

    Args:
        processor: a processor with a chat template.
        instruction: the user's text beside the image.
        caption: the assistant's answer (any placeholder text when only the prompt is needed).

    Returns:
        (prompt ending with the generation prompt, text the template puts before the answer
        (e.g. a space or an empty think block), text right after the answer).
    """
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}
    prompt = _apply_template(processor, [user], add_generation_prompt=True)
    if caption is None:
        return prompt, "", ""
    answer = {"role": "assistant", "content": [{"type": "text", "text": caption}]}
    full = _apply_template(processor, [user, answer], add_generation_prompt=False)
    at = full.find(caption, len(prompt) if full.startswith(prompt) else 0)
    if not full.startswith(prompt) or at < 0:
        raise ValueError(
            f"chat template of {type(processor).__name__}: the conversation with the answer does not start "
            "with the generation prompt, so the answer's tokens cannot be located; use a checkpoint whose "
            "template renders the assistant turn after `add_generation_prompt`"
        )
    return prompt, full[len(prompt) : at], full[at + len(caption) :]


def _apply_template(processor: Any, messages: list[dict], add_generation_prompt: bool) -> str:
    # Rendered through the tokenizer: some processors' own apply_chat_template reads video
    # settings (SmolVLM), and a processor built without torchvision has no video processor.
    return processor.tokenizer.apply_chat_template(
        messages,
        chat_template=processor.chat_template,
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
    )


def find_end_token(tokenizer: Any, after_answer: str) -> str:
    """The token that closes the assistant turn: the template's first special token after the
    answer (<|im_end|>, <end_of_turn>, <end_of_utterance>), else the tokenizer's EOS."""
    ids = tokenizer(after_answer, add_special_tokens=False)["input_ids"] if after_answer else []
    special = set(tokenizer.all_special_ids) | {
        i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special
    }
    if ids and ids[0] in special:
        return tokenizer.convert_ids_to_tokens(ids[0])
    return tokenizer.eos_token


def count_caption_tokens(tokenizer: Any, prompt: str, lead: str, caption: str) -> int:
    """How many tokens the answer adds after the prompt (the joined text is tokenized once).

    The template's text before the answer (`lead`) stays in the prompt, unless it is whitespace
    that the tokenizer merges into the caption's first token (SmolVLM's "Assistant: a" -> " a").
    """
    full_ids = tokenizer(prompt + lead + caption, add_special_tokens=False)["input_ids"]
    for prefix in (prompt + lead, prompt) if lead.strip() == "" and lead else (prompt + lead,):
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        if full_ids[: len(prefix_ids)] == prefix_ids:
            return len(full_ids) - len(prefix_ids)
    raise ValueError(
        f"caption {caption!r}: its first token merges with the chat template's text before it, so the "
        "answer cannot be separated from the prompt for label masking"
    )


def build_chat_inputs(
    processor: Any,
    images: list[Any],
    instructions: list[str],
    captions: list[str] | None,
    max_length: int | None = None,
    with_pixels: bool = True,
) -> dict[str, Any]:
    """Chat-template inputs for a batch; with captions, labels on caption + end-of-turn only.

    Args:
        processor: the checkpoint's processor (with a chat template).
        images: RGB PIL images, one per row (without pixels also image files or (height, width)).
        instructions: the user turn's text, one per row.
        captions: targets (right padding); None builds left-padded generation inputs.
        max_length: most tokens per training row; None = the tokenizer's `model_max_length`.
        with_pixels: False = the same tensors minus the pixels, the images' tokens spliced in by
            size without processing them (`image_token_splices.py`; training from the cache).

    Returns:
        The processor's tensors (input_ids, attention_mask, pixel_values, ...) + labels.
    """

    def run(texts: list[str], side: str) -> dict[str, Any]:
        if with_pixels:
            return _run_processor(processor, images, texts, side)
        return build_without_pixels(processor, images, texts, instructions, side, _run_processor)

    if captions is None:
        return run([render_turns(processor, text, None)[0] for text in instructions], "left")
    tokenizer = processor.tokenizer
    # altcap cuts long rows itself (caption tokens only) and counts them in one warning; the
    # tokenizer's own "indexing errors" warning would wrongly tell the user the run is broken.
    getattr(tokenizer, "deprecation_warnings", {})[SEQUENCE_TOO_LONG_WARNING] = True
    texts, tails = [], []
    for instruction, caption in zip(instructions, captions, strict=True):
        prompt, lead, after = render_turns(processor, instruction, caption)
        texts.append(prompt + lead + caption + find_end_token(tokenizer, after))
        tails.append(count_caption_tokens(tokenizer, prompt, lead, caption) + 1)
    inputs = run(texts, "right")
    return fit_to_max_length(inputs, tails, _resolve_max_length(tokenizer, max_length), captions)


def _run_processor(processor: Any, images: list[Any], texts: list[str], side: str) -> dict[str, Any]:
    # Chat templates write every special token themselves (BOS included): the tokenizer adds none,
    # as in transformers' own `apply_chat_template(tokenize=True)`.
    batch = processor(
        images=[[image] for image in images],
        text=texts,
        padding=True,
        padding_side=side,
        add_special_tokens=False,
        return_tensors="pt",
    )
    return dict(batch)


def _resolve_max_length(tokenizer: Any, max_length: int | None) -> int | None:
    limit = max_length if max_length is not None else getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel (1e30).
    return int(limit) if limit is not None and limit < 10**7 else None


def fit_to_max_length(
    inputs: dict[str, Any], tails: list[int], max_length: int | None, captions: list[str]
) -> dict[str, Any]:
    """Add labels covering each row's last `tails[i]` real tokens, cutting rows to `max_length`.

    Only caption tokens are ever cut (the image placeholders and the prompt come first); a row
    whose prompt alone exceeds `max_length` is an error, and cut rows are counted in one warning.

    Raises:
        ValueError: naming the row, its caption and the token counts.
    """
    lengths = inputs["attention_mask"].sum(dim=1).tolist()
    if max_length is not None and max(lengths) > max_length:
        for row, (length, tail) in enumerate(zip(lengths, tails, strict=True)):
            if length - tail >= max_length:
                raise ValueError(
                    f"row {row} (caption {captions[row][:40]!r}): image + prompt take {length - tail} tokens "
                    f"but max_length={max_length} leaves no room for the caption; raise max_length or "
                    "lower model.max_image_pixels (image tokens are never cut)"
                )
        cut = sum(length > max_length for length in lengths)
        logger.warning(
            "%d of %d rows cut to max_length=%d (caption tokens only)", cut, len(lengths), max_length
        )
        shape = inputs["input_ids"].shape  # every per-token tensor (mask, token types) is cut alike
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor) and value.shape == shape:
                inputs[key] = value[:, :max_length]
        tails = [tail - max(0, length - max_length) for length, tail in zip(lengths, tails, strict=True)]
        lengths = [min(length, max_length) for length in lengths]
    labels = torch.full_like(inputs["input_ids"], IGNORE_INDEX)
    for row, (length, tail) in enumerate(zip(lengths, tails, strict=True)):
        labels[row, length - tail : length] = inputs["input_ids"][row, length - tail : length]
    inputs["labels"] = labels
    return inputs


def decoder_prompt_length(inputs: dict[str, Any]) -> int:
    """Decoder-only models echo the (left-padded) prompt before the new tokens."""
    return int(inputs["input_ids"].shape[1])


CHAT_FORMAT = TextFormat(
    build_inputs=build_chat_inputs,
    prompt_length=decoder_prompt_length,
    build_text_inputs=partial(build_chat_inputs, with_pixels=False),
)


def clean_caption(text: str, turn_markers: tuple[str, ...] = ()) -> str:
    """A generated answer without thinking blocks and anything from a turn marker on."""
    text = _THINK_BLOCK.sub("", text).replace("</think>", "")
    for marker in turn_markers:
        if marker and marker in text:
            text = text.split(marker, 1)[0]
    return text.strip()


def stop_token_ids(processor: Any) -> list[int]:
    """EOS plus the template's end-of-turn token, so generation ends with the assistant turn."""
    tokenizer = processor.tokenizer
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if getattr(processor, "chat_template", None):
        _, _, after = render_turns(processor, "x", "y")
        end_id = tokenizer.convert_tokens_to_ids(find_end_token(tokenizer, after))
        if end_id is not None and end_id not in ids:
            ids.append(end_id)
    return ids


def generate_captions(
    model: Any, processor: Any, inputs: dict[str, Any], generation: dict[str, Any], text_format: TextFormat
) -> list[str]:
    """Batched generation; decodes the new tokens only and cleans them (see `clean_caption`)."""
    tokenizer = processor.tokenizer
    settings = {
        "eos_token_id": stop_token_ids(processor),
        "pad_token_id": tokenizer.pad_token_id,
        **generation,
    }
    model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    if settings.pop("cuda_graphs", False):  # decode steps replayed as CUDA graphs
        sequences = generate_with_chat_graphs(model, model_inputs, settings)
    else:
        sequences = model.generate(**model_inputs, **settings)
    new_tokens = sequences[:, text_format.prompt_length(inputs) :]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    markers = tuple(t for t in ("<|im_start|>", "<start_of_turn>", "\nUser:", "<|user|>") if t)
    return [clean_caption(text, markers) for text in texts]


def make_build_inputs(text_format: TextFormat) -> Callable[..., dict[str, Any]]:
    """The registry's `build_inputs` over a text format (prompts resolved, pixels required)."""

    def build_inputs(
        processor: Any,
        images: list[Any],
        prompts: list[str | None] | None = None,
        captions: list[str] | None = None,
        *,
        with_pixels: bool = True,
    ) -> dict[str, Any]:
        instructions = resolve_prompts(prompts, len(images), text_format.default_instruction)
        if with_pixels:
            return text_format.build_inputs(processor, images, instructions, captions)
        if text_format.build_text_inputs is not None:
            return text_format.build_text_inputs(processor, images, instructions, captions)
        # The text tensors depend on the images' sizes only: blank images stand in (no decoding).
        inputs = text_format.build_inputs(processor, blank_images(images), instructions, captions)
        return without_pixels(inputs)

    return build_inputs


def make_generate(text_format: TextFormat) -> Callable[..., list[str]]:
    """The registry's `generate` over a text format."""

    def generate(model: Any, processor: Any, inputs: dict[str, Any], generation: dict[str, Any]) -> list[str]:
        return generate_captions(model, processor, inputs, generation, text_format)

    return generate


def build_chat_vlm_family(
    name: str,
    model_types: tuple[str, ...],
    hf_class: str,
    text_format: TextFormat = CHAT_FORMAT,
    lora_scope: str = LANGUAGE_SCOPE,
    vision_parts: tuple[str, ...] | None = ("model.vision_tower", "model.multi_modal_projector"),
    packed_vision_attention: PackedVisionAttention | None = None,
    graphed_decoding: bool = True,
    graphed_training: bool = True,
) -> ModelFamily:
    """The family record of a chat VLM (the one place a generic `ModelFamily` is constructed).

    Args:
        name: family name (lowercase, e.g. "qwen2_5_vl").
        model_types: the transformers `config.model_type`s it handles.
        hf_class: the transformers class `AutoModelForImageTextToText` maps them to.
        text_format: the prompt/label format; the chat template unless the model has its own.
        lora_scope: the language model's attribute name (Idefics3/SmolVLM: "text_model").
        vision_parts: dotted paths of the frozen vision tower and projector (the LLaVA layout by
            default); None = no feature cache (the model's forward takes no precomputed features).
        packed_vision_attention: set where the tower loops over packed spans on sdpa (Qwen-VL).
        graphed_decoding: `generation.cuda_graphs` replays decode steps as CUDA graphs
            (`graphed_chat_decoding.py`); False where transformers' generate fails on a static cache.
        graphed_training: `train.cuda_graphs` replays the language model's training passes as CUDA
            graphs (`graphed_chat_training.py`); False where the VLM hands its language model more
            than embeddings, a 2-D padding mask and positions (per-layer masks, deepstack features).

    Returns:
        A `ModelFamily` (not yet registered).
    """
    return ModelFamily(
        name=name,
        hf_class=hf_class,
        model_types=model_types,
        default_lora_targets=LANGUAGE_LINEAR_LEAVES,
        load=with_vision_attention(load_chat_vlm, packed_vision_attention),
        build_inputs=make_build_inputs(text_format),
        generate=make_generate(text_format),
        lora_scope=lora_scope,
        quantized=QuantizedLoading(with_vision_attention(load_chat_vlm_4bit, packed_vision_attention)),
        load_processor=load_chat_processor,
        caption_loss=caption_loss,
        uses_chat_template=text_format is CHAT_FORMAT,
        follows_instructions=text_format is CHAT_FORMAT,
        feature_cache=build_chat_feature_cache(vision_parts) if vision_parts else None,
        part_lora=CHAT_PART_LORA,
        packed_vision_attention=packed_vision_attention,
        graphed_decoding=GraphedDecoding(check=chat_graphs_problem) if graphed_decoding else None,
        graphed_training=GraphedTraining(enable=enable_graphed_training) if graphed_training else None,
    )


def register_chat_vlm(name: str, model_types: tuple[str, ...] | None = None, **kwargs: Any) -> ModelFamily:
    """Build and register a chat VLM family; `model_types` defaults to `(name,)` and `hf_class` to
    what `AutoModelForImageTextToText` maps the first model type to."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    types = model_types or (name,)
    hf_class = kwargs.pop("hf_class", None) or MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES[types[0]]
    return register_family(build_chat_vlm_family(name, types, hf_class, **kwargs))
