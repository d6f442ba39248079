"""Gated MLPs whose hidden width is not a multiple of 8 run on zero-padded weight copies.

Why: Hopper's fast cuBLAS kernels need 16-byte aligned rows. Qwen2.5-VL's vision MLP is 3,420
wide, so its activations' rows are 6,840 bytes and all three products fall back to SM80 CUTLASS
kernels: on one H200 they ran at 230-260 TFLOP/s against ~750 for the tower's aligned attention
products, 887 of the tower's 1,892 ms per 256 images (`docs/benchmarks.md`, session 14). Padding
the width to 3,424 with zero rows (gate, up) and zero columns (down) changes nothing in exact
arithmetic (the pad units compute act(0) * 0 = 0 and meet zero weights), and lets cuBLAS pick its
aligned kernels; gate and up become one product on the way. The sums run in another order, so
outputs match the unpadded module to bf16 rounding, not bitwise.

The copies (one more set of these weights, ~0.8 GB for Qwen2.5-VL's tower) are made once the
weights are final (`load_model` calls this last) and used while the module's three layers are
plain `nn.Linear`s that the forward does not train: a LoRA wrapper or a forward with gradients for
these weights runs the module's own code, and copies whose source weights moved or changed (their
storage or version: an optimizer step, `.to()`), or that ran wrapped since (a LoRA merged in
place), are made again. Weights edited in place through `.data` with no forward in between are
not seen; nothing in altcap edits a frozen module's weights that way and then runs it.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ALIGN = 8  # bf16/fp16 elements per 16 bytes


def _layers(module: nn.Module) -> tuple[Any, Any, Any]:
    return module.gate_proj, module.up_proj, module.down_proj


def _source(module: nn.Module) -> tuple:
    return tuple((layer.weight.data_ptr(), layer.weight._version) for layer in _layers(module))


def _is_unaligned_gated_mlp(module: nn.Module) -> bool:
    layers = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    if not all(type(layer) is nn.Linear for layer in layers) or not callable(getattr(module, "act_fn", None)):
        return False
    gate, up, down = layers
    width = gate.out_features
    shapes_fit = up.out_features == width and down.in_features == width and gate.in_features == up.in_features
    return shapes_fit and width % ALIGN != 0 and (gate.bias is None) == (up.bias is None)


def _pad(module: nn.Module) -> None:
    """(Re)make the padded copies, as non-persistent buffers: `.to()` moves them with the module
    (training's `.to("meta")` frees them) and no state dict or weight hash sees them."""
    gate, up, down = _layers(module)
    width = -(-gate.out_features // ALIGN) * ALIGN
    extra = width - gate.out_features
    # Normal tensors even when called under inference mode: they may meet inputs that need grad.
    with torch.inference_mode(False), torch.no_grad():
        gate_up = torch.cat([F.pad(gate.weight, (0, 0, 0, extra)), F.pad(up.weight, (0, 0, 0, extra))])
        biases = (gate.bias, up.bias)
        bias = None if gate.bias is None else torch.cat([F.pad(b, (0, extra)) for b in biases])
        down_weight = F.pad(down.weight, (0, extra))
    module.register_buffer("_altcap_gate_up_weight", gate_up, persistent=False)
    module.register_buffer("_altcap_gate_up_bias", bias, persistent=False)
    module.register_buffer("_altcap_down_weight", down_weight, persistent=False)
    module._altcap_padded_width = width
    module._altcap_padded_from = _source(module)


def _padded_forward(self: nn.Module, hidden_state: torch.Tensor) -> torch.Tensor:
    layers = _layers(self)
    plain = all(type(layer) is nn.Linear for layer in layers)
    trains = torch.is_grad_enabled() and any(layer.weight.requires_grad for layer in layers)
    if not plain or trains:  # a LoRA wrapper, or weights this forward trains: the module's own path
        # A wrapper may later be merged into these weights in place (PEFT's merge edits `.data`,
        # which no version counter sees): copy again at the next plain forward.
        self._altcap_padded_from = None
        return type(self).forward(self, hidden_state)
    if self._altcap_padded_from != _source(self):  # moved or changed since: copy again
        _pad(self)
    gate_up = F.linear(hidden_state, self._altcap_gate_up_weight, self._altcap_gate_up_bias)
    gate_out, up_out = gate_up.split(self._altcap_padded_width, dim=-1)
    return F.linear(self.act_fn(gate_out) * up_out, self._altcap_down_weight, self.down_proj.bias)


def align_gated_mlps(model: nn.Module) -> list[str]:
    """Give every gated MLP of `model` with an unaligned hidden width padded weight copies.

    Args:
        model: any model; other modules are left alone.

    Returns:
        The names of the MLPs that now run padded.
    """
    names = []
    for name, module in model.named_modules():
        if "_altcap_down_weight" in module._buffers or not _is_unaligned_gated_mlp(module):
            continue
        _pad(module)
        # A bound method, so a deep copy of the module (PEFT's modules_to_save) runs on its own layers.
        module.forward = types.MethodType(_padded_forward, module)
        names.append(name)
    return names
