"""models/fused_rms_norm.py: Llama/Qwen RMSNorms run as torch's rms_norm where nothing trains."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

from altcap.models.fused_rms_norm import fuse_rms_norms
from altcap.train.lean_activations import make_activations_lean


def norms(dtype: torch.dtype) -> torch.nn.ModuleDict:
    torch.manual_seed(0)
    modules = torch.nn.ModuleDict({"qwen": Qwen2RMSNorm(48, eps=1e-6), "gemma": Gemma3RMSNorm(48, eps=1e-6)})
    for module in modules.values():
        torch.nn.init.normal_(module.weight, 0.5, 0.2)
    return modules.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_llama_style_norms_are_fused_with_the_same_outputs_and_gemmas_left_alone(dtype) -> None:
    original = norms(dtype)
    fused = copy.deepcopy(original)
    assert fuse_rms_norms(fused) == ["qwen"]  # Gemma's (1 + weight) in fp32 is another norm
    assert "forward" in fused["qwen"].__dict__ and "forward" not in fused["gemma"].__dict__
    x = (4 * torch.randn(3, 7, 48)).to(dtype)
    with torch.no_grad():
        # On the CPU torch's rms_norm runs transformers' very ops; CUDA's one kernel sums in
        # another order (the probe allows one unit in the last place).
        assert torch.equal(fused["qwen"](x), original["qwen"](x))
    assert fuse_rms_norms(fused) == []  # once is enough


def test_a_forward_that_trains_runs_the_modules_own_code(monkeypatch) -> None:
    fused = norms(torch.float32)
    fuse_rms_norms(fused)
    calls = []
    monkeypatch.setattr(torch.nn.functional, "rms_norm", lambda *a, **k: calls.append(1) or a[0])
    x = torch.randn(2, 48, requires_grad=True)
    fused["qwen"](x).sum().backward()  # input needs its gradient: transformers' own ops
    assert calls == [] and x.grad is not None
    with torch.no_grad():
        fused["qwen"](x)
    fused["qwen"].weight.requires_grad_(False)
    fused["qwen"](x.detach())  # grad enabled, but nothing here can train
    assert calls == [1, 1]


def test_lean_activations_still_take_fused_norms(monkeypatch) -> None:
    """Lean activations compare against the class's forward, not the loader's inference swap, whose
    output may differ in the last place (as CUDA's kernel does; emulated here)."""
    rms_norm = torch.nn.functional.rms_norm

    def one_ulp_off(*args, **kwargs):
        out = rms_norm(*args, **kwargs)
        bits = out.view(torch.int16).clone()
        bits.view(-1)[0] += 1  # the first value's magnitude one unit in the last place up
        return bits.view(out.dtype)

    monkeypatch.setattr(torch.nn.functional, "rms_norm", one_ulp_off)
    fused = norms(torch.bfloat16)
    fused.requires_grad_(False)
    assert fuse_rms_norms(fused) == ["qwen"]
    assert make_activations_lean(fused).norms == 2
