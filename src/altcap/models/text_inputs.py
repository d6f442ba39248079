"""Token-level helpers the family modules share: prompt/caption encoding, label masking, padding,
and decoding what `generate` added after the prompt.

Families build token sequences themselves instead of calling the processor on the joined text,
because only then do they know exactly which positions are prompt (masked to -100) and which are
caption (learned).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

IGNORE_INDEX = -100


def join_prompt_and_caption(prompt_text: str, caption: str) -> str:
    """The text the model sees in training: prompt, one separating space when needed, caption."""
    if not prompt_text or prompt_text.endswith((" ", "\n")):
        return prompt_text + caption
    return f"{prompt_text} {caption}"


def encode_prompt_and_caption(tokenizer: Any, prompt_text: str, caption: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the caption that follows it (no special tokens added).

    The joined text is tokenized once so the caption tokens are exactly those the model would see
    after the prompt; the prompt's own tokens must be a prefix of that.

    Args:
        tokenizer: a (fast) tokenizer.
        prompt_text: the formatted prompt ("" for none).
        caption: the target caption.

    Returns:
        (prompt_ids, caption_ids).

    Raises:
        ValueError: when the tokenizer merges the prompt's last token with the caption.
    """
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"] if prompt_text else []
    full_ids = tokenizer(join_prompt_and_caption(prompt_text, caption), add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(
            f"prompt {prompt_text!r}: its tokens change when the caption {caption!r} follows it, so prompt "
            "and caption cannot be separated for label masking; end the prompt with punctuation or a space"
        )
    return prompt_ids, full_ids[len(prompt_ids) :]


def build_labeled_sequence(
    prefix_ids: Sequence[int], target_ids: Sequence[int]
) -> tuple[list[int], list[int]]:
    """input ids = prefix + target; labels = -100 over the prefix, the target ids after it."""
    return list(prefix_ids) + list(target_ids), [IGNORE_INDEX] * len(prefix_ids) + list(target_ids)


def build_caption_batch(
    tokenizer: Any,
    prefix_ids: Sequence[int],
    prompt_texts: Sequence[str],
    captions: Sequence[str],
    end_id: int,
    pad_id: int,
) -> dict[str, torch.Tensor]:
    """Right-padded training rows `prefix prompt caption end`, learning only `caption end`.

    Args:
        tokenizer: a (fast) tokenizer.
        prefix_ids: ids before every prompt (BOS, image placeholders, ...).
        prompt_texts: formatted prompts, one per example ("" for none).
        captions: target captions, one per example.
        end_id: id closing each caption (EOS, or BLIP's [SEP]).
        pad_id: the tokenizer's padding id.

    Returns:
        input_ids, attention_mask, labels (CPU tensors).
    """
    rows, label_rows = [], []
    for text, caption in zip(prompt_texts, captions, strict=True):
        prompt_ids, caption_ids = encode_prompt_and_caption(tokenizer, text, caption)
        ids, labels = build_labeled_sequence([*prefix_ids, *prompt_ids], [*caption_ids, end_id])
        rows.append(ids)
        label_rows.append(labels)
    input_ids, attention_mask = pad_sequences(rows, pad_id)
    labels, _ = pad_sequences(label_rows, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_value: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to one tensor.

    Args:
        sequences: one id list per example.
        pad_value: filler id (use -100 for labels).
        side: "right" for training, "left" for decoder-only generation (new tokens follow the prompt).

    Returns:
        (padded ids [batch, max_len], attention mask [batch, max_len] with 1 on real tokens).
    """
    max_len = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), max_len), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), max_len), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(max_len - len(seq), max_len) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def resolve_prompts(prompts: Sequence[str | None] | None, batch_size: int, default: str) -> list[str]:
    """One instruction per example: None entries (or no list) get the family's default."""
    if prompts is None:
        return [default] * batch_size
    if len(prompts) != batch_size:
        raise ValueError(f"got {len(prompts)} prompts for {batch_size} images; pass one per image or None")
    return [default if p is None else p for p in prompts]


def decode_new_tokens(tokenizer: Any, sequences: torch.Tensor, prompt_length: int) -> list[str]:
    """Decode generated ids after the first `prompt_length` positions, stripped of special tokens."""
    texts = tokenizer.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)
    return [text.strip() for text in texts]


def generate_new_text(
    model: Any, tokenizer: Any, inputs: dict[str, Any], generation: dict[str, Any], prompt_length: int
) -> list[str]:
    """Run `model.generate` on a batch (labels dropped) and decode only what follows the prompt.

    Args:
        model: a HF model with `generate`.
        tokenizer: the tokenizer that decodes its ids.
        inputs: `build_inputs` output (labels, if any, are ignored).
        generation: HF generate settings (max_new_tokens, num_beams, ...).
        prompt_length: how many leading positions of each returned sequence echo the prompt
            (family-specific: 0 for encoder-decoder LMs).

    Returns:
        One stripped caption per image.
    """
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    sequences = model.generate(**model_inputs, **generation)
    return decode_new_tokens(tokenizer, sequences, prompt_length)


def beam_search_cache_without_cross_reorder() -> dict[str, Any]:
    """`generate` kwargs giving an encoder-decoder KV cache whose beam-search reorder leaves the
    cross-attention K/V alone.

    transformers reorders every layer's cache at every beam step, cross-attention K/V included,
    but each image's beams share one encoder output (it is repeated per beam), and beam indices
    never leave their image: the reorder copies identical values. On the H100 profile of BLIP-2
    Flan-T5-XL (batch 256, 3 beams) cache reordering was 24 % of the GPU time, and the
    cross-attention K/V (prompt + 32 query tokens per layer) are most of what it copies.

    Returns:
        {name: fresh cache}, under the keyword this transformers release reads (`cache` from 5.2x,
        `past_key_values` before).
    """
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache
    from transformers.generation import utils as generation_utils

    class SharedCrossAttentionCache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)

    keyword = "cache" if "cache" in getattr(generation_utils, "ALL_CACHE_NAMES", ()) else "past_key_values"
    return {keyword: SharedCrossAttentionCache(DynamicCache(), DynamicCache())}


def embed_with_image_features(
    model: Any, input_ids: torch.Tensor, image_features: torch.Tensor, image_token_id: int
) -> torch.Tensor:
    """LM input embeddings with image features written over the image placeholder tokens, in order.

    This is the step between the vision and language halves of BLIP-2, InstructBLIP and LLaVA's
    own `forward`; families call it to train from cached features in any transformers 5 release.

    Args:
        model: the multimodal model (or its PEFT wrapper); its input embeddings are used.
        input_ids: token ids with `image_token_id` placeholders, [batch, seq].
        image_features: one row per placeholder, in order, [..., hidden].
        image_token_id: the placeholder id.

    Returns:
        [batch, seq, hidden] embeddings.
    """
    embeds = model.get_input_embeddings()(input_ids)
    placeholders = (input_ids == image_token_id).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(placeholders, image_features.to(embeds.dtype))


def move_to_device(inputs: dict[str, Any], device: Any, float_dtype: Any = None) -> dict[str, Any]:
    """Move tensors to `device`; floating tensors (pixels, features) also to `float_dtype` if given."""
    moved: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            dtype = float_dtype if float_dtype is not None and value.is_floating_point() else None
            value = value.to(device=device, dtype=dtype)
        moved[key] = value
    return moved


# EXIF orientations 5-8 turn the stored picture by 90 degrees when it is shown upright.
_EXIF_ORIENTATION_TAG, _QUARTER_TURNS = 0x0112, (5, 6, 7, 8)


def read_image_size(image: Any) -> tuple[int, int]:
    """(height, width) of an image as the loader gives it (upright), without decoding its pixels.

    Text-only inputs (`build_inputs(..., with_pixels=False)`) need at most the size (LLaVA-NeXT's
    placeholder count depends on it); opening a file reads only its header, so this costs
    microseconds where a decode + resize costs milliseconds. A file's size follows its EXIF
    orientation as `altcap.data.images.read_upright_size` does (models/ may not import data/;
    tests/models/test_text_inputs.py holds the two equal), or a portrait phone photo would get
    the token count of a landscape one.

    Args:
        image: a PIL image (already upright), a path to an image file, or a (height, width) pair.

    Returns:
        (height, width) in pixels.
    """
    if isinstance(image, str | Path):
        from PIL import Image

        with Image.open(image) as opened:  # lazy: PIL decodes pixels only on load()
            width, height = opened.size
            # A PNG's getexif() decodes the pixels; its eXIf chunk, if any, precedes them (in info).
            has_exif = opened.format != "PNG" or "exif" in opened.info
            orientation = int(opened.getexif().get(_EXIF_ORIENTATION_TAG, 1) or 1) if has_exif else 1
        return (width, height) if orientation in _QUARTER_TURNS else (height, width)
    if isinstance(image, Sequence) and len(image) == 2:
        return int(image[0]), int(image[1])
    width, height = image.size
    return height, width
