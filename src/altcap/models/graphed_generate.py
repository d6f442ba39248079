"""The one interface to graphed decoding (`graphed_decoding.py`) that any family can opt into.

A family opts in by declaring `GraphedDecoding(check=...)` and, in its `generate`, sending
`generation["cuda_graphs"]` here with the language model whose decode steps are to be replayed.
`altcap caption` refuses `generation.cuda_graphs` for families without the capability.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def cuda_device_problem(model: Any) -> str | None:
    """Why graphs cannot be captured for `model` (not on a CUDA device, with the fix), or None."""
    device = torch.device(model.device)
    if device.type != "cuda":
        return (
            f"generation.cuda_graphs needs the model on a CUDA device, not {device}; "
            "set --device cuda or drop generation.cuda_graphs"
        )
    return None


def generate_with_graphs(
    model: Any, language_model: Any, model_inputs: Mapping[str, Any], generation: Mapping[str, Any]
) -> torch.Tensor:
    """`model.generate` with `language_model`'s decode steps replayed as CUDA graphs.

    Args:
        model: the full model (or its PEFT wrapper); its own `generate` runs unchanged around the graphs.
        language_model: the encoder-decoder LM inside it (unwrapped) whose decoder steps are captured.
        model_inputs: generate inputs (no labels).
        generation: `model.generate` keyword arguments, without `cuda_graphs`.

    Returns:
        The generated ids, as `model.generate` returns them.

    Raises:
        ValueError: the model is not on a CUDA device.
    """
    from altcap.models.graphed_decoding import graphed_decoder_for

    if problem := cuda_device_problem(model):
        raise ValueError(problem)
    decoder = graphed_decoder_for(language_model)
    max_new_tokens = generation.get("max_new_tokens") or model.generation_config.max_new_tokens
    with decoder.active(max_new_tokens) as cache_kwargs:
        return model.generate(**model_inputs, **generation, **cache_kwargs)
