"""Vision patch embeddings that are a Conv3d with stride == kernel run as one matrix product.

Why: Qwen2-VL / Qwen2.5-VL / Qwen3-VL / Qwen3.5 / GLM-4V embed 14 px patches with an `nn.Conv3d`
whose kernel equals its stride, so each patch meets the kernel exactly once: a linear map of the
flattened patch. cuDNN has no good algorithm for that shape in bf16 on some GPU / cuDNN pairs
(transformers issue #45750, vLLM and SGLang replaced it for that reason), while cuBLAS runs the same
product at full speed. transformers >= 5.25 offers `fusion_config={"patch_embeddings": True}`, but
it re-instantiates the model on the meta device and walks its lazy modules at every load (0.6 s
here, counted in every training run's wall time) and renames the weight; this swap keeps the
module, its parameter and its name, and reads the conv weight through a view (no copy).
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _is_patch_conv(conv: Any) -> bool:
    return (
        isinstance(conv, nn.Conv3d)
        and conv.stride == conv.kernel_size
        and conv.padding == (0, 0, 0)
        and conv.dilation == (1, 1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _linear_forward(self: nn.Conv3d, hidden_states: torch.Tensor) -> torch.Tensor:
    one_patch = (self.in_channels, *self.kernel_size)
    if tuple(hidden_states.shape[1:]) != one_patch:  # several patches per input: a real convolution
        return type(self).forward(self, hidden_states)
    # Each input is one patch [channels, t, h, w], flattened in the kernel's own order, so the
    # weight's row view matches it.
    volume = math.prod(one_patch)
    flat = hidden_states.reshape(-1, volume).to(self.weight.dtype)
    out = F.linear(flat, self.weight.view(self.out_channels, volume), self.bias)
    return out.view(-1, self.out_channels, 1, 1, 1)


def linear_patch_embeds(model: nn.Module) -> list[str]:
    """Make every non-overlapping Conv3d patch embedding of `model` run as `F.linear`.

    The module, its weight and their names stay as they were (adapters, caches and saved
    checkpoints see no change); only the instance's `forward` is replaced.

    Args:
        model: any model; modules that are not such a Conv3d are left alone.

    Returns:
        The names of the convolutions swapped (empty when the model has none).
    """
    swapped = []
    for name, module in model.named_modules():
        if _is_patch_conv(module) and "forward" not in module.__dict__:
            # A bound method, so a deep copy of the module runs on its own weight.
            module.forward = types.MethodType(_linear_forward, module)
            swapped.append(name)
    return swapped
