"""One attention call per layer for vision towers that attend within packed images or windows.

Why: Qwen2-VL / Qwen2.5-VL / Qwen3-VL / Qwen3.5 / GLM-4V towers pack every image's patches into one
sequence and attend within the spans `cu_seqlens` marks (whole images, or Qwen2.5-VL's 112 px
windows). On transformers' sdpa attention their `VisionAttention.forward` splits that sequence and
runs one SDPA call per span in a Python loop, after a `.tolist()` sync: a 448 px image has 16
windows, so a batch of 256 images is ~4,000 small SDPA launches per layer. On a "flash"
implementation the same module makes ONE call with `cu_seq_lens_q/k` and `max_length_q/k`; this
module registers such an implementation that needs no flash-attn package:

- CUDA, bf16/fp16: `torch.nn.attention.varlen.varlen_attn` (torch's flash varlen kernel) when the
  installed torch has it;
- elsewhere (CPU, fp32, older torch, dropout, GQA): the spans grouped by length and ONE
  `scaled_dot_product_attention` per distinct length on the stacked spans, equal to the loop;
- called without `cu_seq_lens_q` (any other module): transformers' own sdpa function, unchanged.

Only the towers of families with the `PackedVisionAttention` capability get it
(`apply_vision_attention`, called by the chat loader); the language model stays on sdpa.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

if TYPE_CHECKING:
    from altcap.models.registry import PackedVisionAttention

logger = logging.getLogger(__name__)

# transformers' vision attention takes its one-call varlen branch iff "flash" is in the config's
# implementation name (`is_flash_attention_requested`), so the name must contain "flash".
VARLEN_ATTENTION = "altcap_flash_varlen"
_FLASH_DTYPES = (torch.float16, torch.bfloat16)


def _find_varlen_attn() -> Any:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # torch < 2.10 has no varlen attention
        return None
    return varlen_attn


_VARLEN_ATTN = _find_varlen_attn()
_VARLEN_TAKES_SCALE = _VARLEN_ATTN is not None and "scale" in inspect.signature(_VARLEN_ATTN).parameters


def can_use_varlen_kernel(query: torch.Tensor, key: torch.Tensor, dropout: float, is_causal: bool) -> bool:
    """Whether torch's flash varlen kernel can run this call (CUDA, half precision, no dropout,
    non-causal, as many key as query heads, a head size flash supports).

    Args:
        query: [1, heads, tokens, head_dim].
        key: [1, kv_heads, tokens, head_dim].
        dropout: attention dropout probability.
        is_causal: whether the caller asked for causal attention.

    Returns:
        True when `varlen_attn` handles the call; False sends it to the grouped SDPA path.
    """
    return (
        _VARLEN_ATTN is not None
        and query.is_cuda
        and query.dtype in _FLASH_DTYPES
        and dropout == 0.0
        and not is_causal
        and query.shape[1] == key.shape[1]
        and query.shape[-1] % 8 == 0
        and query.shape[-1] <= 256
    )


def run_varlen_kernel(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_length: int,
    scaling: float | None,
) -> torch.Tensor:
    """Packed attention through `torch.nn.attention.varlen.varlen_attn`.

    Args:
        query, key, value: [1, heads, tokens, head_dim] on CUDA, bf16/fp16.
        cu_seqlens: [spans + 1] cumulative span boundaries.
        max_length: the longest span.
        scaling: softmax scale; None = 1/sqrt(head_dim).

    Returns:
        [1, tokens, heads, head_dim].
    """
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, head_dim]
    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    if _VARLEN_TAKES_SCALE:
        out = _VARLEN_ATTN(q, k, v, cu, cu, max_length, max_length, scale=scaling)
    else:
        if scaling is not None:  # older signatures scale by 1/sqrt(head_dim) only: fold the rest into q
            q = q * (scaling * q.shape[-1] ** 0.5)
        out = _VARLEN_ATTN(q, k, v, cu, cu, max_length, max_length)
    return out.unsqueeze(0)


def run_grouped_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    scaling: float | None,
    dropout: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """Packed attention as one SDPA call per distinct span length, on the spans of that length
    stacked into a batch (what the per-span loop computes, in a handful of calls).

    Args:
        query, key, value: [1, heads, tokens, head_dim] (key/value may have fewer heads: GQA).
        cu_seqlens: [spans + 1] cumulative span boundaries.
        scaling: softmax scale; None = 1/sqrt(head_dim).
        dropout: attention dropout probability.
        is_causal: causal attention within each span.

    Returns:
        [1, tokens, heads, head_dim].
    """
    bounds = cu_seqlens.tolist()  # one sync, as the per-span loop's `.tolist()`
    starts_by_length: dict[int, list[int]] = {}
    for start, end in itertools.pairwise(bounds):
        if end > start:
            starts_by_length.setdefault(end - start, []).append(start)
    gqa = query.shape[1] != key.shape[1]
    pieces, order = [], []
    for length, starts in starts_by_length.items():
        index = (torch.tensor(starts)[:, None] + torch.arange(length)).to(query.device)  # [spans, length]
        q, k, v = (t[0][:, index].transpose(0, 1) for t in (query, key, value))  # [spans, heads, length, dim]
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scaling, is_causal=is_causal, enable_gqa=gqa
        )
        # [spans, heads, length, dim] -> [spans * length, heads, dim], the spans' tokens in order
        pieces.append(out.transpose(1, 2).reshape(-1, out.shape[1], out.shape[-1]))
        order.append(index.reshape(-1))
    if len(pieces) == 1:  # one length: the spans came out in token order already
        return pieces[0].unsqueeze(0)
    # Back to token order: the groups came out by span length, not by position.
    return torch.cat(pieces)[torch.argsort(torch.cat(order))].unsqueeze(0)


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    is_causal: bool | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: packed spans in one call, otherwise its sdpa function.

    Args:
        module: the calling attention module.
        query, key, value: [batch, heads, tokens, head_dim]; batch is 1 with `cu_seq_lens_q`.
        attention_mask: must be None with `cu_seq_lens_q` (spans replace the mask).
        scaling: softmax scale; None = 1/sqrt(head_dim).
        dropout: attention dropout probability.
        is_causal: causal attention (vision towers pass False).
        cu_seq_lens_q, cu_seq_lens_k: [spans + 1] cumulative span boundaries (equal: self-attention).
        max_length_q, max_length_k: the longest span (computed when missing).
        **kwargs: passed to transformers' sdpa function when it handles the call.

    Returns:
        (output [batch, tokens, heads, head_dim], None), the layout of transformers' flash functions.
    """
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
            **kwargs,
        )
    if attention_mask is not None or query.shape[0] != 1:
        raise ValueError("packed varlen attention takes one packed sequence and no attention mask")
    same_spans = cu_seq_lens_k is None or cu_seq_lens_k is cu_seq_lens_q
    if not same_spans and not torch.equal(cu_seq_lens_k, cu_seq_lens_q):
        raise ValueError("packed varlen attention needs the same spans for queries and keys (self-attention)")
    causal = bool(is_causal)
    if can_use_varlen_kernel(query, key, dropout, causal):
        lengths = cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]
        max_length = max_length_q if max_length_q is not None else lengths.max()
        return run_varlen_kernel(query, key, value, cu_seq_lens_q, int(max_length), scaling), None
    return run_grouped_sdpa(query, key, value, cu_seq_lens_q, scaling, dropout, causal), None


def register_varlen_attention() -> str:
    """Register `varlen_attention_forward` with transformers (idempotent); returns its name."""
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention_forward)
    return VARLEN_ATTENTION


def apply_vision_attention(model: Any, capability: PackedVisionAttention, choice: str = "auto") -> str:
    """Give a loaded model's vision tower the packed one-call attention, its language model untouched.

    Args:
        model: the loaded (unwrapped) transformers model.
        capability: the family's `PackedVisionAttention` (which sub-config is the tower's).
        choice: `ModelConfig.vision_attention`: "auto" swaps transformers' sdpa for
            `VARLEN_ATTENTION`; "sdpa" keeps transformers' per-span loop (to compare).

    Returns:
        The tower's attention implementation now (a tower loaded on another one, e.g. a real flash
        attention, keeps it).
    """
    config = getattr(model.config, capability.sub_config)
    if choice != "auto" or config._attn_implementation != "sdpa":
        return config._attn_implementation
    # Set on the config, not through `set_attn_implementation`: transformers' check there imports
    # the flash-attn package (or a hub kernel) for any name containing "flash", and this needs neither.
    # The tower's modules read the implementation from this config object at every call.
    config._attn_implementation = register_varlen_attention()
    logger.info("vision attention: %s (one packed call per layer)", VARLEN_ATTENTION)
    return VARLEN_ATTENTION


def with_vision_attention(
    load: Callable[..., tuple[Any, Any]], capability: PackedVisionAttention | None
) -> Callable[..., tuple[Any, Any]]:
    """A family loader that also applies `apply_vision_attention` per `spec.vision_attention`.

    Args:
        load: `(spec, ...) -> (model, processor)`.
        capability: the family's `PackedVisionAttention`; None returns `load` itself.

    Returns:
        The loader to register.
    """
    if capability is None:
        return load

    def load_with_vision_attention(spec: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        model, processor = load(spec, *args, **kwargs)
        apply_vision_attention(model, capability, getattr(spec, "vision_attention", "auto"))
        return model, processor

    return load_with_vision_attention
