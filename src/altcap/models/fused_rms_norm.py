"""RMSNorms of the Llama / Qwen kind run through torch's `rms_norm` where nothing needs their gradient.

Why: transformers' RMSNorm upcasts its input to fp32, squares it, takes the mean, the reciprocal
root, multiplies, casts back and scales: seven kernels, five of them passes over fp32 copies of the
activations. Qwen2.5-VL's vision tower runs 64 of them over 262,144 x 1,280 values per 256 images,
and its language model 73 more over every prompt token. `torch.nn.functional.rms_norm` computes the
same fp32 normalisation in one CUDA kernel and returns the input's dtype; the weight is then applied
in that dtype, as transformers does. Only the reduction order differs, so outputs match to bf16
rounding (a probe checks each module before it is swapped).

The swap is for inference: a forward that could train (gradients enabled and an input or weight
that requires them) runs the module's own code, so training's autograd graph and
`lean_activations`' swaps are untouched.
"""

from __future__ import annotations

import inspect
import types

import torch
import torch.nn.functional as F
from torch import nn

_EPS = "_altcap_rms_norm_eps"


def rms_norm_eps(module: nn.Module) -> float | None:
    """The norm's epsilon, under either name transformers' RMSNorms use."""
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    return eps if isinstance(eps, float) else None


def is_rms_norm(module: nn.Module) -> bool:
    """A leaf RMSNorm with a weight vector and an epsilon whose forward takes one input (not a gated
    norm's `(x, gate)`); which kind of RMSNorm it computes is for a probe to tell."""
    weight = getattr(module, "weight", None)
    return (
        "rmsnorm" in type(module).__name__.lower()
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 1
        and weight.is_floating_point()
        and rms_norm_eps(module) is not None
        and not any(True for _ in module.children())
        and len(inspect.signature(module.forward).parameters) == 1
    )


def _fused_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and (hidden_states.requires_grad or self.weight.requires_grad):
        return type(self).forward(self, hidden_states)
    # rms_norm returns the input's dtype, as transformers casts back before applying the weight.
    return self.weight * F.rms_norm(hidden_states, self.weight.shape, eps=getattr(self, _EPS))


def _matches(module: nn.Module) -> bool:
    """Whether the fused forward gives the module's own output on a seeded probe, to its dtype's
    rounding (Gemma's `(1 + weight)` norm, say, does not)."""
    weight = module.weight
    generator = torch.Generator().manual_seed(0)
    probe = (3 * torch.randn(4, weight.shape[0], generator=generator)).to(weight.device, weight.dtype)
    with torch.no_grad():
        own, fused = type(module).forward(module, probe), _fused_forward(module, probe)
    if own.dtype != fused.dtype or own.shape != fused.shape:
        return False
    # One unit in the last place of the output's dtype, relative: the rsqrt may round differently.
    return torch.allclose(fused.float(), own.float(), rtol=torch.finfo(own.dtype).eps, atol=0.0)


def fuse_rms_norms(model: nn.Module) -> list[str]:
    """Give every Llama/Qwen-style RMSNorm in `model` the fused forward (inference only, see above).

    Args:
        model: any model; other modules, and norms computed otherwise, are left alone.

    Returns:
        The names of the norms swapped.
    """
    names = []
    for name, module in model.named_modules():
        if hasattr(module, _EPS) or not is_rms_norm(module):
            continue
        setattr(module, _EPS, rms_norm_eps(module))
        if not _matches(module):
            delattr(module, _EPS)
            continue
        # A bound method, so a deep copy of the module runs on its own weight.
        module.forward = types.MethodType(_fused_forward, module)
        names.append(name)
    return names
