"""Hold for the backward pass what it needs, not what autograd happens to keep: two module swaps
that lower LoRA training's activation memory with gradients bit-identical to the model's own.

- Gated MLPs, `down(act(gate(x)) * up(x))` (Llama, Qwen, Gemma, SmolLM ... language models and
  Qwen-VL's vision blocks): autograd keeps gate's output for the activation's backward and both
  factors of the product for its own, i.e. `act(gate(x))` as well. Recomputing the activation from
  gate's output in backward drops that copy: intermediate_size values per token per layer.
- Norms that hold more than their input: transformers' RMSNorms upcast the input and keep the fp32
  copy for backward (4 bytes a value for a bf16 model). Rerunning the norm from its bf16 input in
  backward keeps 2 bytes a value.

For Qwen2.5-VL-3B at batch 16 x 306 tokens that is 36 layers x (11,008 x 2 B + 2 x 2,050 x 2 B)
a token, about 5.3 GB (tests/train/test_lean_activations.py counts it on a small model): the gap
between transformers' layers and liger-kernel's fused ones, which TRL's `use_liger_kernel` swaps
in. Written here because liger's kernels need Triton on CUDA and patch model classes one
architecture at a time (0.8.5 does not import on transformers 5.25); these swaps are plain torch,
find their modules by shape, and are checked on a probe before they are kept.
Backward reruns exactly the ops of the original forward, so every gradient is bitwise the same.
`torch.utils.checkpoint` would do the recompute too, at ~2.5x the host time a call (a Function
here: 73 norms a step in Qwen2.5-VL-3B).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import MethodType

import torch

logger = logging.getLogger(__name__)

# A norm is swapped when autograd keeps more than this many bytes besides its input and weights,
# per byte of input: transformers' fp32-upcasting RMSNorm keeps 2 (+ a value a row); nn.LayerNorm
# keeps only its per-row statistics, which are not worth a recompute.
EXTRA_BYTES_PER_INPUT_BYTE = 0.5


class _RecomputedActivationProduct(torch.autograd.Function):
    """`act(gate) * up`, keeping gate and up only: act(gate) is rebuilt in backward."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor, act: Callable) -> torch.Tensor:
        ctx.act = act
        ctx.save_for_backward(gate, up)
        return act(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        gate, up = ctx.saved_tensors
        with torch.enable_grad():
            leaf = gate.detach().requires_grad_(True)
            activated = ctx.act(leaf)
        # The same ops autograd runs for `act(gate) * up`: mul's two grads, then act's backward.
        grad_up = grad * activated.detach() if ctx.needs_input_grad[1] else None
        grad_gate = None
        if ctx.needs_input_grad[0]:
            (grad_gate,) = torch.autograd.grad(activated, leaf, grad * up)
        return grad_gate, grad_up, None


class _RecomputedFromInput(torch.autograd.Function):
    """`forward(x)` keeping only x (and the weights): forward is rerun in backward."""

    @staticmethod
    def forward(ctx, forward: Callable, x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        ctx.forward_fn = forward
        ctx.save_for_backward(x, *weights)
        return forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, *weights = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(ctx.needs_input_grad[1])
            out = ctx.forward_fn(leaf)
        wanted = [t for t, need in zip([leaf, *weights], ctx.needs_input_grad[1:], strict=True) if need]
        grads = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True))
        return (None, *(next(grads) if need else None for need in ctx.needs_input_grad[1:]))


def lean_gated_mlp_forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A gated MLP's forward through `_RecomputedActivationProduct` (gate before up, as the original)."""
    gate = self.gate_proj(x)
    return self.down_proj(_RecomputedActivationProduct.apply(gate, self.up_proj(x), self.act_fn))


def recomputed_norm_forward(original: Callable, weights: tuple, x: torch.Tensor) -> torch.Tensor:
    """A norm's forward through `_RecomputedFromInput` (weights passed so their grads flow)."""
    return _RecomputedFromInput.apply(original, x, *weights)


@dataclass(frozen=True)
class LeanCounts:
    """How many modules each swap took."""

    gated_mlps: int
    norms: int


def make_activations_lean(model: torch.nn.Module) -> LeanCounts:
    """Swap the forward of every gated MLP and fp32-keeping norm in `model`, in place.

    Each candidate is checked on a small probe (seeded on its own generator, in eval mode, so
    training's RNG and dropout stream are untouched): an MLP is kept only if the swapped forward
    returns exactly the original's output, a norm only if autograd keeps more than its input.

    Args:
        model: the model about to train (after LoRA is applied).

    Returns:
        The number of MLPs and norms swapped.
    """
    mlps = norms = 0
    for module in model.modules():
        if is_gated_mlp(module) and probe_matches(module, partial(lean_gated_mlp_forward, module)):
            module.forward = MethodType(lean_gated_mlp_forward, module)
            mlps += 1
        elif is_norm(module) and keeps_more_than_input(module):
            weights = tuple(module.parameters(recurse=False))
            module.forward = partial(recomputed_norm_forward, module.forward, weights)
            norms += 1
    logger.info("lean activations: %d gated MLPs and %d norms recompute in backward", mlps, norms)
    return LeanCounts(mlps, norms)


def is_gated_mlp(module: torch.nn.Module) -> bool:
    """Whether `module` has the gate/up/down projections and activation of a gated MLP."""
    parts = ("gate_proj", "up_proj", "down_proj")
    return (
        all(isinstance(getattr(module, name, None), torch.nn.Module) for name in parts)
        and callable(getattr(module, "act_fn", None))
        and takes_one_input(module)
    )


def is_norm(module: torch.nn.Module) -> bool:
    """A leaf module named like a norm with a weight vector (RMSNorm, T5LayerNorm, LayerNorm ...)."""
    weight = getattr(module, "weight", None)
    return (
        "norm" in type(module).__name__.lower()
        and not any(True for _ in module.children())
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 1
        and takes_one_input(module)
    )


def takes_one_input(module: torch.nn.Module) -> bool:
    """Whether `module.forward` takes exactly one argument (the swaps pass on nothing else)."""
    return len(inspect.signature(module.forward).parameters) == 1


def probe_input(module: torch.nn.Module, width: int) -> torch.Tensor:
    """Two seeded random tokens of `width` on the module's device and dtype (own generator)."""
    weight = next(p for p in module.parameters() if p.is_floating_point())  # not 4-bit packed bytes
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, 2, width, generator=generator).to(weight.device, weight.dtype)


def in_eval_mode(module: torch.nn.Module, run: Callable) -> object:
    """`run()` with `module` in eval mode (no dropout draws), every submodule's mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        return run()
    finally:
        for m, mode in modes:
            m.training = mode


def probe_matches(module: torch.nn.Module, swapped: Callable) -> bool:
    """Whether `swapped` gives exactly `module`'s own output on a probe (an MLP whose forward is
    not `down(act(gate(x)) * up(x))`, e.g. with a dropout or a bias term between, is left alone)."""
    width = getattr(module.gate_proj, "in_features", None)
    if not isinstance(width, int):
        return False
    x = probe_input(module, width)
    with torch.no_grad():
        return bool(in_eval_mode(module, lambda: torch.equal(module(x), swapped(x))))


def keeps_more_than_input(norm: torch.nn.Module) -> bool:
    """Whether autograd keeps more than `norm`'s input and weights for its backward (by probe)."""
    x = probe_input(norm, norm.weight.shape[0]).requires_grad_(True)
    weights = {p.data_ptr() for p in norm.parameters()}
    kept: list[torch.Tensor] = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        kept.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        in_eval_mode(norm, lambda: norm(x))
    seen = {x.data_ptr()} | weights
    extra = 0
    for tensor in kept:
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            extra += tensor.numel() * tensor.element_size()
    return extra > EXTRA_BYTES_PER_INPUT_BYTE * x.numel() * x.element_size()
