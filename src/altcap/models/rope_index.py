"""Multimodal rope positions (Qwen-VL, Qwen3.5, GLM-4V) computed on the host.

Why: these models turn input ids and image grids into 3-D position ids in `get_rope_index`, a
Python loop over the batch rows (boolean indexing, `.tolist()`, a few `arange`s per span). With
the inputs on a GPU every row costs several device syncs and dozens of tiny launches while the GPU
waits: between the vision tower and the prefill of each caption batch, and in every training
forward. On the host the same integer arithmetic takes ~0.3 ms a row and the result goes to the
device in one copy; being integer arithmetic, the positions are identical.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

_ON_HOST = "_altcap_rope_index_on_host"


def compute_rope_index_on_host(model: Any) -> bool:
    """Make the model's `get_rope_index` run on CPU copies of its inputs, wherever they are.

    Args:
        model: a loaded transformers model (`ForConditionalGeneration`, its `.model` holding
            `get_rope_index`); models without one are left alone.

    Returns:
        True when the method was replaced (False: none, or replaced already).
    """
    inner = getattr(model, "model", None)
    method = getattr(inner, "get_rope_index", None)
    if method is None or getattr(method, _ON_HOST, False):
        return False

    @functools.wraps(method)
    def get_rope_index_on_host(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        device = next((v.device for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)), None)
        if device is None or device.type == "cpu":
            return method(*args, **kwargs)
        position_ids, deltas = method(*map(_to_cpu, args), **{k: _to_cpu(v) for k, v in kwargs.items()})
        return position_ids.to(device), deltas.to(device)

    setattr(get_rope_index_on_host, _ON_HOST, True)
    inner.get_rope_index = get_rope_index_on_host
    return True


def _to_cpu(value: Any) -> Any:
    return value.cpu() if isinstance(value, torch.Tensor) else value
