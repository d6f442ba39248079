"""Shared code of the query-token families (BLIP-2 and InstructBLIP): Q image placeholders, the
Q-Former, and an OPT/Vicuna (decoder-only) or Flan-T5 (encoder-decoder) LM.

Token layouts (Q = num_query_tokens image placeholders, which the model overwrites with the
projected Q-Former outputs):
- OPT: `<image>*Q </s> Question: {instruction} Answer: caption </s>`; loss on `caption </s>`.
- T5: encoder `<image>*Q {instruction} </s>`; decoder labels `caption </s>` (caption tokens only).
"""

from __future__ import annotations

from typing import Any

import torch

from altcap.models.graphed_generate import cuda_device_problem, generate_with_graphs
from altcap.models.loading import load_pretrained
from altcap.models.text_inputs import (
    IGNORE_INDEX,
    beam_search_cache_without_cross_reorder,
    build_caption_batch,
    decode_new_tokens,
    embed_with_image_features,
    pad_sequences,
)

# Leaf names of the Q-Former's attention layers (BLIP-2 and InstructBLIP share the BERT layout),
# adapted too with `lora.include_qformer`.
QFORMER_LORA_TARGETS = ("query", "value")


def load_query_token_model(model_class: Any, spec: Any, *, four_bit: bool = False) -> tuple[Any, Any]:
    """`from_pretrained` a BLIP-2-style model + its processor, marked encoder-decoder or not.

    Args:
        model_class: Blip2ForConditionalGeneration or InstructBlipForConditionalGeneration.
        spec: the model section of a stage config (model_id, dtype, device, ...).
        four_bit: weights in 4-bit NF4 (QLoRA).

    Returns:
        (model, processor).
    """
    from transformers import AutoProcessor

    model, processor = load_pretrained(model_class, AutoProcessor, spec, four_bit=four_bit)
    mark_encoder_decoder(processor, model)
    return model, processor


def mark_encoder_decoder(processor: Any, model: Any) -> None:
    """Record on the processor whether the LM is encoder-decoder (build_inputs only sees the processor)."""
    processor.altcap_encoder_decoder = not model.config.use_decoder_only_language_model


def is_encoder_decoder(processor: Any) -> bool:
    """True for a T5 language model; falls back to "no BOS token" (T5 has none) for bare processors."""
    marked = getattr(processor, "altcap_encoder_decoder", None)
    return marked if marked is not None else processor.tokenizer.bos_token_id is None


def format_prompt(processor: Any, instruction: str) -> str:
    """The LM prompt for an instruction: Flan-T5 takes it raw; OPT was not instruction-tuned, so it
    gets the "Question: ... Answer:" format the BLIP-2 paper prompts it with."""
    if is_encoder_decoder(processor) or not instruction:
        return instruction
    return f"Question: {instruction} Answer:"


def build_query_token_inputs(
    processor: Any, prompt_texts: list[str], captions: list[str] | None
) -> dict[str, torch.Tensor]:
    """input_ids/attention_mask (+labels) with Q image placeholders in front (BLIP-2 and InstructBLIP).

    Args:
        processor: Blip2Processor / InstructBlipProcessor (gives tokenizer, image token, Q).
        prompt_texts: formatted prompts, one per image.
        captions: targets for training, or None for generation inputs.

    Returns:
        Dict of CPU tensors.
    """
    tokenizer = processor.tokenizer
    image_ids = [tokenizer.convert_tokens_to_ids(str(processor.image_token))] * processor.num_query_tokens
    encoder_decoder = is_encoder_decoder(processor)
    bos = [] if encoder_decoder or tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    if captions is None:
        rows = [image_ids + bos + _encode_prompt(tokenizer, text, encoder_decoder) for text in prompt_texts]
        input_ids, attention_mask = pad_sequences(rows, tokenizer.pad_token_id, side="left")
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    if encoder_decoder:
        return _build_seq2seq_inputs(tokenizer, image_ids, prompt_texts, captions)
    return build_caption_batch(
        tokenizer, image_ids + bos, prompt_texts, captions, tokenizer.eos_token_id, tokenizer.pad_token_id
    )


def _encode_prompt(tokenizer: Any, text: str, encoder_decoder: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
    # T5's encoder input ends with </s>, as its tokenizer would add.
    return [*ids, tokenizer.eos_token_id] if encoder_decoder else ids


def _build_seq2seq_inputs(
    tokenizer: Any, image_ids: list[int], prompt_texts: list[str], captions: list[str]
) -> dict[str, torch.Tensor]:
    rows = [image_ids + _encode_prompt(tokenizer, text, True) for text in prompt_texts]
    targets = [
        [*tokenizer(c, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id] for c in captions
    ]
    input_ids, attention_mask = pad_sequences(rows, tokenizer.pad_token_id)
    labels, _ = pad_sequences(targets, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def run_query_former(
    model: Any,
    image_embeds: torch.Tensor,
    text_ids: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Q-Former outputs at the query positions, as the model's own forward computes them.

    Args:
        model: a BLIP-2 or InstructBLIP model (or its PEFT wrapper).
        image_embeds: vision-tower output, [batch, patches, hidden].
        text_ids: InstructBLIP's Q-Former instruction tokens (None for BLIP-2, whose Q-Former
            reads no text).
        text_mask: their attention mask (with text_ids).

    Returns:
        [batch, num_query_tokens, qformer_hidden].
    """
    query_tokens = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    text: dict[str, torch.Tensor] = {}
    if text_ids is not None:
        # The instruction tokens follow the queries, so the Q-Former sees one mask over both.
        query_mask = torch.ones(query_tokens.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = {"input_ids": text_ids, "attention_mask": torch.cat([query_mask, text_mask], dim=1)}
    outputs = model.qformer(
        query_embeds=query_tokens,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_mask,
        **text,
    )
    return outputs.last_hidden_state[:, : query_tokens.shape[1], :]


def forward_with_query_output(model: Any, query_output: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
    """Loss given Q-Former query outputs: project, fill the placeholders, run the LM.

    Shared by BLIP-2 and InstructBLIP. This is the language half of their `forward`, written out
    because `forward` always runs the vision tower in transformers < 5.24 (no way to pass
    features in); the loss is taken exactly as `forward` takes it.
    """
    projection = model.language_projection
    image_features = projection(query_output.to(projection.weight.dtype))
    attention_mask, labels = inputs["attention_mask"], inputs["labels"]
    embeds = embed_with_image_features(
        model, inputs["input_ids"], image_features, model.config.image_token_id
    )
    # No KV cache: a loss never reads it, and its per-layer state makes torch.compile recompile each layer.
    lm_inputs = {"inputs_embeds": embeds, "attention_mask": attention_mask, "use_cache": False}
    if not model.config.use_decoder_only_language_model:
        return model.language_model(**lm_inputs, labels=labels).loss
    logits = model.language_model(**lm_inputs).logits
    return model.loss_function(
        logits=logits[:, -labels.size(1) :, :], labels=labels, vocab_size=model.config.text_config.vocab_size
    )


def generate(model: Any, processor: Any, inputs: dict[str, Any], generation: dict[str, Any]) -> list[str]:
    """Batched generation; decodes only new tokens (a decoder-only LM echoes the prompt ids first).

    Shared by BLIP-2 and InstructBLIP; `generate_sequences` says how the ids are made.
    """
    prompt_length = 0 if is_encoder_decoder(processor) else inputs["input_ids"].shape[1]
    return decode_new_tokens(
        processor.tokenizer, generate_sequences(model, processor, inputs, generation), prompt_length
    )


def cuda_graphs_problem(model: Any, processor: Any) -> str | None:
    """Why `generation.cuda_graphs` cannot run on this model (with the fix), or None if it can."""
    if not is_encoder_decoder(processor):
        return (
            "generation.cuda_graphs replays the decoder of a Flan-T5 LM; this model's LM is decoder-only "
            "(OPT): drop generation.cuda_graphs"
        )
    return cuda_device_problem(model)


def generate_sequences(
    model: Any, processor: Any, inputs: dict[str, Any], generation: dict[str, Any]
) -> torch.Tensor:
    """`model.generate`'s ids for a batch (labels dropped).

    Beam search on a T5 LM skips transformers' reorder of the cross-attention cache
    (`beam_search_cache_without_cross_reorder`): same ids, less copying. `generation["cuda_graphs"]`
    replays a T5 LM's decode steps as CUDA graphs (`graphed_generate`): same ids, fewer launches.
    """
    generation = dict(generation)
    cuda_graphs = generation.pop("cuda_graphs", False)
    encoder_decoder = is_encoder_decoder(processor)
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    if cuda_graphs:
        if problem := cuda_graphs_problem(model, processor):
            raise ValueError(problem)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return generate_with_graphs(model, base.language_model, model_inputs, generation)
    beams = generation.get("num_beams") or 1
    if encoder_decoder and beams > 1 and "cache_implementation" not in generation:
        generation = {**generation, **beam_search_cache_without_cross_reorder()}
    return model.generate(**model_inputs, **generation)
