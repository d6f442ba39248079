"""Hold for the backward pass what it needs, not what autograd happens to keep: two module swaps
that lower LoRA training's activation memory without changing what is computed.

- Gated MLPs, `down(act(gate(x)) * up(x))` (Llama, Qwen, Gemma, SmolLM ... language models and
  Qwen-VL's vision blocks): autograd keeps gate's output for the activation's backward and both
  factors of the product for its own, i.e. `act(gate(x))` as well. Recomputing the activation from
  gate's output in backward drops that copy (intermediate_size values per token per layer); the
  backward then runs the same kernels as autograd's, so gradients are bitwise the same.
- RMSNorms: transformers' upcast the input and keep the fp32 copy for backward (4 bytes a value
  for a bf16 model). Keeping the bf16 input and one fp32 scale a row (2 bytes a value) and writing
  the norm's gradient out in fp32 gives autograd's gradient to fp32 rounding.

For Qwen2.5-VL-3B at batch 16 x 306 tokens that is 36 layers x (11,008 x 2 B + 2 x 2,048 x 2 B)
a token, about 5.3 GB (tests/train/test_lean_activations.py counts it on a small model), the gap
between transformers' layers and liger-kernel's fused ones, which TRL's `use_liger_kernel` swaps
in. Written here because liger's kernels need Triton on CUDA and patch model classes one
architecture at a time (0.8.5 does not import on transformers 5.25); these are plain torch, find
their modules by shape, and are checked on a probe before they are kept.

Measured (docs/benchmarks.md): peak 37.5 -> 32.2 GB. One H100 call (session 13) showed 49.4 -> 40.2
samples/s, with the lean run first in its call; on one H200 (session 14) runs alternating off and
on took 26.4 / 21.9 / 23.2 / 21.5 s and the profiled step's kernels +0.7 %, so the first run of a
call is what was slow. `lean_activations` is on by default.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import MethodType
from typing import Any

import torch

from altcap.models.fused_rms_norm import is_rms_norm, rms_norm_eps

logger = logging.getLogger(__name__)

# An RMSNorm is swapped when autograd keeps more than this many bytes besides its input and
# weight, per byte of input: 2 for a bf16 model's fp32 copy; in fp32 the "copy" is the input itself.
EXTRA_BYTES_PER_INPUT_BYTE = 0.5


@dataclass(frozen=True)
class Activation:
    """An elementwise activation and the aten kernel autograd runs for its backward."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (grad, input) -> input's grad


ACTIVATIONS = (
    Activation(torch.nn.functional.silu, torch.ops.aten.silu_backward),
    Activation(partial(torch.nn.functional.gelu, approximate="tanh"),
               partial(torch.ops.aten.gelu_backward, approximate="tanh")),
    Activation(torch.nn.functional.gelu, partial(torch.ops.aten.gelu_backward, approximate="none")),
)  # fmt: skip


class _RecomputedActivationProduct(torch.autograd.Function):
    """`act(gate) * up`, keeping gate and up only: act(gate) is rebuilt in backward.

    Backward runs the kernels autograd runs for the original (the product's two grads, then the
    activation's own backward kernel), so its gradients are bitwise those of the original.
    """

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor, act: Activation) -> torch.Tensor:
        ctx.act = act
        ctx.save_for_backward(gate, up)
        return act.forward(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        gate, up = ctx.saved_tensors
        grad_up = grad * ctx.act.forward(gate) if ctx.needs_input_grad[1] else None
        grad_gate = ctx.act.backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        return grad_gate, grad_up, None


@dataclass(frozen=True)
class RmsNormVariant:
    """Where an RMSNorm's weight enters: its output from the normalised fp32 input, and the fp32
    gradient reaching the normalised input from the output's."""

    output: Callable[[torch.Tensor, torch.Tensor, torch.dtype], torch.Tensor]
    grad_normalized: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


RMS_NORM_VARIANTS = (
    # Llama, Qwen, SmolLM, Qwen-VL's vision tower: weight times the normalised input cast back.
    RmsNormVariant(lambda normed, w, dtype: w * normed.to(dtype), lambda grad, w: (grad * w).float()),
    # Gemma: (1 + weight) in fp32, cast at the end.
    RmsNormVariant(
        lambda normed, w, dtype: (normed * (1.0 + w.float())).to(dtype),
        lambda grad, w: grad.float() * (1.0 + w.float()),
    ),
)


class _LeanRmsNorm(torch.autograd.Function):
    """An RMSNorm (frozen weight) keeping its input and one fp32 scale a row, not an fp32 copy.

    Forward runs the module's own ops (checked bitwise on a probe); backward is the norm's
    gradient written out in fp32, equal to autograd's to fp32 rounding.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float, variant: RmsNormVariant) -> Any:
        x32 = x.float()
        scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        ctx.variant, ctx.weight = variant, weight
        ctx.save_for_backward(x, scale)
        return variant.output(x32 * scale, weight, x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, scale = ctx.saved_tensors
        normed = x.float() * scale
        grad_normed = ctx.variant.grad_normalized(grad, ctx.weight)
        # d/dx of x * rsqrt(mean(x^2) + eps): scale * (g - normed * mean(g * normed)).
        grad_x = scale * (grad_normed - normed * (grad_normed * normed).mean(-1, keepdim=True))
        return grad_x.to(x.dtype), None, None, None


def lean_gated_mlp_forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A gated MLP's forward through `_RecomputedActivationProduct` (gate before up, as the original)."""
    gate = self.gate_proj(x)
    return self.down_proj(_RecomputedActivationProduct.apply(gate, self.up_proj(x), self.lean_activation))


def lean_rms_norm_forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An RMSNorm's forward through `_LeanRmsNorm` with the variant its probe matched."""
    return _LeanRmsNorm.apply(x, self.weight, self.lean_eps, self.lean_variant)


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
    Modules alike in every part (`structure_key`) share one probe's verdict: a 24-layer SmolVLM2
    shape probes 2 modules rather than 73 (0.31 -> 0.03 s on the CPU machine; each probe is a host
    sync on a GPU).

    Args:
        model: the model about to train (after LoRA is applied).

    Returns:
        The number of MLPs and norms swapped.
    """
    verdicts: dict[tuple, dict[str, Any] | None] = {}
    mlps = norms = 0
    for module in model.modules():
        if is_gated_mlp(module):
            forward, settings_of = lean_gated_mlp_forward, lean_mlp_settings
        elif is_frozen_rms_norm(module):
            forward, settings_of = lean_rms_norm_forward, lean_norm_settings
        else:
            continue
        key = structure_key(module)
        if key not in verdicts:
            verdicts[key] = settings_of(module)
        if (settings := verdicts[key]) is not None:
            swap(module, forward, settings)
            mlps += forward is lean_gated_mlp_forward
            norms += forward is lean_rms_norm_forward
    logger.info("lean activations: %d gated MLPs and %d norms keep less for backward", mlps, norms)
    return LeanCounts(mlps, norms)


def structure_key(module: torch.nn.Module) -> tuple:
    """What a probe's verdict on `module` depends on: the classes of it and its parts, their
    tensors' shapes, dtypes, devices and trainability, and their plain settings (eps, ...)."""
    parts = tuple(
        (name, type(part), tuple(sorted((k, v) for k, v in vars(part).items() if _plain(v))))
        for name, part in module.named_modules()
    )
    tensors = tuple(
        (name, tuple(t.shape), t.dtype, t.device, t.requires_grad)
        for name, t in (*module.named_parameters(), *module.named_buffers())
    )
    activation = getattr(module, "act_fn", None)
    return parts, tensors, None if isinstance(activation, torch.nn.Module) else activation


def _plain(value: Any) -> bool:
    return isinstance(value, bool | int | float | str | type(None))


def lean_mlp_settings(mlp: torch.nn.Module) -> dict[str, Any] | None:
    """The lean forward's settings for a gated MLP whose probe it matches exactly, else None."""
    activation = match_activation(mlp)
    if activation is None:
        return None
    settings = {"lean_activation": activation}
    return settings if swapped_matches(mlp, lean_gated_mlp_forward, settings) else None


def lean_norm_settings(norm: torch.nn.Module) -> dict[str, Any] | None:
    """The settings of the first variant matching a norm that keeps more than its input, else None."""
    if not keeps_more_than_input(norm):
        return None
    eps, width = rms_norm_eps(norm), norm.weight.shape[0]
    for variant in RMS_NORM_VARIANTS:
        settings = {"lean_eps": eps, "lean_variant": variant}
        if swapped_matches(norm, lean_rms_norm_forward, settings, width):
            return settings
    return None


def swap(module: torch.nn.Module, forward: Callable, settings: dict[str, Any]) -> None:
    """Give `module` the lean `forward`, reading `settings` (set as attributes)."""
    for name, value in settings.items():
        setattr(module, name, value)
    module.forward = MethodType(forward, module)


def swapped_matches(
    module: torch.nn.Module, forward: Callable, settings: dict[str, Any], width: int | None = None
) -> bool:
    """Whether the lean `forward` with `settings` returns exactly the module's own output on a
    probe; the module is left as it was either way."""
    for name, value in settings.items():
        setattr(module, name, value)
    try:
        return probe_matches(module, partial(forward, module), width)
    finally:
        for name in settings:
            delattr(module, name)


def is_gated_mlp(module: torch.nn.Module) -> bool:
    """Whether `module` has the gate/up/down projections and activation of a gated MLP."""
    parts = ("gate_proj", "up_proj", "down_proj")
    return (
        all(isinstance(getattr(module, name, None), torch.nn.Module) for name in parts)
        and callable(getattr(module, "act_fn", None))
        and takes_one_input(module)
    )


def is_frozen_rms_norm(module: torch.nn.Module) -> bool:
    """A leaf RMSNorm (`models.fused_rms_norm.is_rms_norm`) with a frozen weight: trainable norms
    keep autograd's."""
    return is_rms_norm(module) and not module.weight.requires_grad


def match_activation(mlp: torch.nn.Module) -> Activation | None:
    """The known activation `mlp.act_fn` computes bitwise on a probe, or None."""
    x = probe_input(mlp, 64)
    with torch.no_grad():
        out = mlp.act_fn(x)
        return next((act for act in ACTIVATIONS if torch.equal(act.forward(x), out)), None)


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


def probe_matches(module: torch.nn.Module, swapped: Callable, width: int | None = None) -> bool:
    """Whether `swapped` gives exactly `module`'s own output on a probe of `width` features (an MLP's
    input width by default): an MLP whose forward is not `down(act(gate(x)) * up(x))`, or a norm
    computed otherwise than the variant tried, is left alone."""
    width = width or getattr(module.gate_proj, "in_features", None)
    if not isinstance(width, int):
        return False
    x = probe_input(module, width)
    # Against the class's forward, not an inference-only swap the loader made (`fused_rms_norm`,
    # `aligned_mlp`): that is what runs whenever a forward trains.
    own = type(module).forward
    with torch.no_grad():
        return bool(in_eval_mode(module, lambda: torch.equal(own(module, x), swapped(x))))


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
