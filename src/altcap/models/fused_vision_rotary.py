"""Vision towers' rotary embedding as one Triton kernel where nothing trains (CUDA, liger-kernel).

Why: the Qwen-VL / Qwen3.5 / GLM-4V towers rotate queries and keys with transformers'
`apply_rotary_pos_emb_vision`: fp32 copies of q and k, `rotate_half`'s concatenations, four
multiplies, two adds and two casts back, each a pass over the activations. At one caption batch of
Qwen2.5-VL (256 images, 262,144 patches) that is 15.2 ms a layer on an H100, against 2.7 ms for
liger-kernel's rope kernel (same fp32 maths in registers; bit-equal on 99.998% of outputs), and
2.8 ms for a `torch.compile`d copy, which costs seconds to compile in every new process
(`benchmarks.tower_ops_speed`, session 15). So liger's kernel, where liger-kernel is installed;
transformers' own function everywhere else.

transformers looks the function up as a global of the modeling file at every call, so that global
is the one place to hook. It becomes a dispatcher that runs transformers' function unchanged
unless the call comes from an attention module `fuse_vision_rotary` opted in (a context variable
its forward sets): a model that plain transformers loaded into the same process (the benchmarks'
HF baseline) runs exactly as before. A call that could train, or on another device, runs the
original; a kernel that fails logs once and falls back.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

ROTARY_FUNCTION = "apply_rotary_pos_emb_vision"
FUSED_DEVICES = ("cuda",)  # liger-kernel is Triton: CUDA (and ROCm, which torch also calls "cuda")
_OPTED_IN = ContextVar("altcap_fused_vision_rotary", default=False)
_ORIGINAL = "_altcap_original_rotary"  # on the dispatcher: transformers' function it stands for
_INNER_FORWARD = "_altcap_fused_vision_rotary"  # on an opted-in module: the forward it had


def liger_rotary() -> Callable | None:
    """liger-kernel's rope on the towers' [patches, heads, head_dim] layout, or None without it.

    liger takes [batch, heads, seq, head_dim] views of [batch, seq, heads, head_dim] memory: the
    towers' q and k are that with a batch of one.
    """
    try:
        from liger_kernel.transformers.rope import liger_rotary_pos_emb
    except ImportError:
        return None
    except Exception as err:  # installed but broken here (its triton, its transformers pins): not used
        logger.warning("liger-kernel fails to import (%s: %s); rotary unfused", type(err).__name__, err)
        return None

    def rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple:
        q_out, k_out = liger_rotary_pos_emb(
            q.unsqueeze(0).transpose(1, 2), k.unsqueeze(0).transpose(1, 2), cos[None], sin[None]
        )
        return q_out.transpose(1, 2)[0], k_out.transpose(1, 2)[0]

    return rotary


_KERNEL: list[Callable | None] = []  # liger_rotary(), found at the first fused call; None: none or failed


def kernel_in_use() -> str | None:
    """What rotated opted-in towers' q and k so far: "liger-kernel", "transformers" (no liger, or it
    failed), or None (no fused-eligible call yet). For benchmark reports."""
    if not _KERNEL:
        return None
    return "liger-kernel" if _KERNEL[0] is not None else "transformers"


def can_fuse(query: torch.Tensor, key: torch.Tensor) -> bool:
    """Inference on a device the kernel is for: no autograd graph to keep."""
    could_train = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad)
    return query.device.type in FUSED_DEVICES and not could_train


def _dispatcher(original: Callable) -> Callable:
    def apply_rotary(q: torch.Tensor, k: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not (_OPTED_IN.get() and can_fuse(q, k)):
            return original(q, k, *args, **kwargs)
        if not _KERNEL:
            _KERNEL.append(liger_rotary())
            if _KERNEL[0] is None:
                logger.info("vision rotary: transformers' own (pip install liger-kernel fuses it on CUDA)")
        if (kernel := _KERNEL[0]) is not None:
            try:
                return kernel(q, k, *args, **kwargs)
            except Exception as err:  # any kernel failure: transformers' own code runs
                message = "vision rotary kernel failed (%s: %s); running transformers' own"
                logger.warning(message, type(err).__name__, err)
                _KERNEL[0] = None
        return original(q, k, *args, **kwargs)

    setattr(apply_rotary, _ORIGINAL, original)
    return apply_rotary


def _install_dispatcher(modeling: types.ModuleType) -> None:
    current = getattr(modeling, ROTARY_FUNCTION)
    if not hasattr(current, _ORIGINAL):
        setattr(modeling, ROTARY_FUNCTION, _dispatcher(current))


def _rotates_in_vision(module: nn.Module) -> types.ModuleType | None:
    """The modeling module whose vision rotary this module's own forward calls, if any."""
    modeling = sys.modules.get(type(module).__module__)
    forward = getattr(type(module).forward, "__code__", None)
    if modeling is None or forward is None or ROTARY_FUNCTION not in forward.co_names:
        return None
    return modeling if callable(getattr(modeling, ROTARY_FUNCTION, None)) else None


def _forward_opted_in(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    token = _OPTED_IN.set(True)
    try:
        return getattr(self, _INNER_FORWARD)(*args, **kwargs)
    finally:
        _OPTED_IN.reset(token)


def fuse_vision_rotary(model: nn.Module) -> list[str]:
    """Opt every attention module in `model` that calls transformers' vision rotary into liger's
    kernel (CUDA inference with liger-kernel installed, see above).

    Args:
        model: any model; modules whose forward does not call the vision rotary are left alone.

    Returns:
        The names of the attention modules opted in.
    """
    names = []
    for name, module in model.named_modules():
        modeling = _rotates_in_vision(module)
        if modeling is None or hasattr(module, _INNER_FORWARD):
            continue
        _install_dispatcher(modeling)
        # The forward it had (its class's, or another instance-level swap), run inside the opt-in.
        setattr(module, _INNER_FORWARD, module.forward)
        module.forward = types.MethodType(_forward_opted_in, module)
        names.append(name)
    return names
