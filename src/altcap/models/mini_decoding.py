"""altcap-mini's caption decoding: transformers' `generate` (beam search and all), with three costs
of a one-image caption on the CPU taken out. Split from families/altcap_mini.py, which keeps the
model, loading and the family record.

Measured on the 2-core dev box, one image at beam 3 (docs/benchmarks.md, start-up section):
- Beam search copies the prompt once per beam before its first forward pass, so the 88-token
  prompt (49 of them visual) ran through the LM three times. Here it runs once per image and the
  KV cache is copied per beam (`DynamicCache.batch_repeat_interleave`, the copy `generate` makes
  of its inputs); only the prompt's last token is left to `generate`. Saves ~0.4 CPU s an image,
  and at batch 16 more than half of a batch's CPU time (the prompts dominate there).
- The tied LM head (49152 x 576) computed for 3 rows (the beams) through `F.linear` took 30-33 ms a
  step, four times a single row's 8.7 ms: MKL's kernel for a transposed weight and very few rows
  streams the weight poorly. `weight @ hidden.T` reads it once for all rows (12 ms). Only for
  few rows on the CPU, only while generating (training's logits keep `F.linear`).
- A few rows decode faster on one thread than on two (FEW_THREAD_ROWS).
None changes more than float rounding: the pinned captions stay as they were
(tests/models/test_altcap_mini.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from altcap.models.graph_steps import generate_cache_keyword
from altcap.models.mini_tokens import stop_token_ids

# Up to this many rows (images x beams) a step's LM head goes through `weight @ hidden.T`: measured
# faster or equal than F.linear there with 1 and 2 threads; above, F.linear is as fast or faster.
FEW_HEAD_ROWS = 8
# Up to this many rows a CPU generate call runs on one thread: each decoding step is ~200 small
# matrix products that stream the weights from memory, which a second OpenMP thread does not speed
# up but wakes and waits for at each one. One image at beam 3 on the shared 2-core box (load ~2):
# 2.5 s on 1 thread against 3.0 s on 2; 2 images: 3.0 against 4.2 CPU s.
FEW_THREAD_ROWS = 8


def generate_ids(language_model: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor,
                 settings: Mapping[str, Any], tokenizer: Any) -> torch.Tensor:
    """New token ids for a batch of prompt embeddings, by `language_model.generate`.

    Args:
        language_model: the causal LM (a transformers model, LoRA layers allowed).
        embeds: prompt embeddings (B, T, hidden), left-padded.
        attention_mask: (B, T), 0 at padding.
        settings: `generate` keyword arguments (num_beams, max_new_tokens, ...).
        tokenizer: for the pad and stop token ids.

    Returns:
        (B * num_return_sequences, new tokens) ids, as `generate` returns them for inputs_embeds.
    """
    extra: dict[str, Any] = {}
    beams = int(settings.get("num_beams") or 1)
    if shares_prompt_prefill(settings):
        extra[generate_cache_keyword()] = prefill_prompt_cache(
            language_model, embeds[:, :-1], attention_mask[:, :-1], beams
        )
    with few_row_lm_head(language_model), few_row_threads(embeds, embeds.shape[0] * beams):
        return language_model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stop_token_ids(tokenizer), **extra, **settings,
        )


def shares_prompt_prefill(settings: Mapping[str, Any]) -> bool:
    """Whether the prompt's cache is built once an image and copied per beam: deterministic beam
    search on transformers' dynamic cache (a static cache is allocated by `generate` itself)."""
    beams = int(settings.get("num_beams") or 1)
    dynamic_cache = settings.get("cache_implementation") is None and settings.get("use_cache", True)
    return beams > 1 and not settings.get("do_sample") and bool(dynamic_cache)


def prefill_prompt_cache(language_model: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor,
                         beams: int) -> Any:
    """The KV cache of a prompt prefix, computed once per row and repeated `beams` times per row.

    Args:
        language_model: the causal LM.
        embeds: prefix embeddings (B, T', hidden).
        attention_mask: (B, T').
        beams: copies per row, in `generate`'s order (each row's copies next to each other).

    Returns:
        The cache, for `generate(cache=...)` (older transformers: `past_key_values=`).
    """
    # The positions `generate` gives a left-padded prompt, so the cached keys are the ones it would make.
    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    output = language_model.get_decoder()(
        inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=True
    )
    cache = getattr(output, "cache", None)
    cache = output.past_key_values if cache is None else cache  # transformers before the rename
    cache.batch_repeat_interleave(beams)
    return cache


@contextmanager
def few_row_lm_head(language_model: nn.Module) -> Iterator[None]:
    """While generating on the CPU, the LM head computes few rows as `weight @ hidden.T`.

    Args:
        language_model: the causal LM; a head that is not a plain CPU `nn.Linear` is left alone.

    Yields:
        Nothing; the head's own forward is back on exit.
    """
    head = language_model.get_output_embeddings()
    if type(head) is not nn.Linear or head.weight.device.type != "cpu":
        yield
        return
    head.forward = lambda hidden: few_row_linear(head, hidden)
    try:
        yield
    finally:
        vars(head).pop("forward", None)  # not `del`: two overlapping generate calls both restore


@contextmanager
def few_row_threads(embeds: torch.Tensor, rows: int) -> Iterator[None]:
    """One torch thread while generating `rows` rows on the CPU, when they are few.

    Args:
        embeds: the prompt embeddings (their device decides).
        rows: images x beams.

    Yields:
        Nothing; the thread count is restored on exit.
    """
    threads = torch.get_num_threads()
    if embeds.device.type != "cpu" or rows > FEW_THREAD_ROWS or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def few_row_linear(linear: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """`linear(hidden)`, as `weight @ hidden.T` when hidden has at most FEW_HEAD_ROWS rows.

    Args:
        linear: the layer.
        hidden: (..., in_features).

    Returns:
        (..., out_features), equal to `linear(hidden)` up to float rounding.
    """
    rows = hidden.numel() // hidden.shape[-1]
    if rows > FEW_HEAD_ROWS:
        return nn.functional.linear(hidden, linear.weight, linear.bias)
    flat = torch.mm(linear.weight, hidden.reshape(rows, hidden.shape[-1]).T).T
    if linear.bias is not None:
        flat = flat + linear.bias
    return flat.reshape(*hidden.shape[:-1], linear.out_features)
