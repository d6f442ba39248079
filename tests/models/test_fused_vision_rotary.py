"""models/fused_vision_rotary.py: the towers' rotary as liger's kernel, for opted-in models only."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _family_checks import PROMPTS, make_images
from transformers import AutoModelForImageTextToText

from altcap.models import fused_vision_rotary
from altcap.models.fused_vision_rotary import can_fuse, fuse_vision_rotary
from altcap.models.loading import ModelConfig, load_model


@pytest.fixture
def qwen(chat_dir: Callable[[str], Path]):
    """altcap's tiny Qwen2.5-VL, its processor inputs, and the same folder loaded by plain transformers."""
    folder = chat_dir("qwen2_5_vl")
    model, processor, family = load_model(ModelConfig(model_id=str(folder), device="cpu"))
    inputs = family.build_inputs(processor, make_images(), PROMPTS)
    plain = AutoModelForImageTextToText.from_pretrained(folder).eval()
    return model, inputs, plain


def tower_output(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    return out.pooler_output if hasattr(out, "pooler_output") else out


@pytest.fixture
def fused_on_cpu(monkeypatch) -> list[int]:
    """Lets the CPU take the fused path with a counting stand-in for liger's kernel (calls)."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import rotate_half

    calls: list[int] = []
    monkeypatch.setattr(fused_vision_rotary, "FUSED_DEVICES", ("cpu",))
    monkeypatch.setattr(fused_vision_rotary, "_KERNEL", [])

    def counting(q, k, cos, sin):  # transformers' maths, computed here, so no call can loop back
        calls.append(1)
        cos, sin = cos.unsqueeze(-2).float(), sin.unsqueeze(-2).float()
        return tuple((x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype) for x in (q, k))

    monkeypatch.setattr(fused_vision_rotary, "liger_rotary", lambda: counting)
    return calls


def test_the_loader_opts_in_every_tower_attention_and_a_plain_model_runs_transformers_own(
    qwen, fused_on_cpu: list[int]
) -> None:
    model, inputs, plain = qwen
    depth = len(model.model.visual.blocks)
    assert all(hasattr(block.attn, "_altcap_fused_vision_rotary") for block in model.model.visual.blocks)
    assert fuse_vision_rotary(model) == []  # once is enough
    assert fused_vision_rotary.kernel_in_use() is None  # nothing rotated yet
    fused_out = tower_output(model, inputs)
    assert len(fused_on_cpu) == depth and fused_vision_rotary.kernel_in_use() == "liger-kernel"
    plain_out = tower_output(plain, inputs)  # same process, same patched modeling file
    assert len(fused_on_cpu) == depth
    # altcap's tower also packs its attention into one call: the same maths in another order.
    torch.testing.assert_close(fused_out, plain_out, rtol=1e-5, atol=1e-6)
    tower_copy = copy.deepcopy(model.model.visual)
    with torch.no_grad():
        tower_copy(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    assert len(fused_on_cpu) == 2 * depth  # a copy keeps the opt-in, on its own weights:
    assert all(block.attn._altcap_fused_vision_rotary.__self__ is block.attn for block in tower_copy.blocks)


def test_a_call_that_could_train_or_runs_elsewhere_is_not_fused(monkeypatch) -> None:
    q, k = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    assert not can_fuse(q, k)  # CUDA only
    monkeypatch.setattr(fused_vision_rotary, "FUSED_DEVICES", ("cpu",))
    assert can_fuse(q, k)
    assert not can_fuse(q.requires_grad_(), k)
    with torch.no_grad():
        assert can_fuse(q, k)


def test_a_kernel_that_fails_warns_once_and_runs_transformers_own(
    qwen, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    model, inputs, plain = qwen
    monkeypatch.setattr(fused_vision_rotary, "FUSED_DEVICES", ("cpu",))
    monkeypatch.setattr(fused_vision_rotary, "_KERNEL", [])
    attempts = []

    def broken(*args):
        attempts.append(1)
        raise RuntimeError("no Triton backend")

    monkeypatch.setattr(fused_vision_rotary, "liger_rotary", lambda: broken)
    with caplog.at_level(logging.WARNING, logger="altcap.models.fused_vision_rotary"):
        expected = tower_output(plain, inputs)
        torch.testing.assert_close(tower_output(model, inputs), expected, rtol=1e-5, atol=1e-6)
        tower_output(model, inputs)
    assert attempts == [1]
    assert [r.getMessage() for r in caplog.records if "vision rotary" in r.getMessage()] == [
        "vision rotary kernel failed (RuntimeError: no Triton backend); running transformers' own"
    ]


def test_without_liger_kernel_transformers_own_runs(qwen, monkeypatch, caplog) -> None:
    model, inputs, plain = qwen
    monkeypatch.setattr(fused_vision_rotary, "FUSED_DEVICES", ("cpu",))
    monkeypatch.setattr(fused_vision_rotary, "_KERNEL", [])
    # an import of it fails, as where it is missing; its submodules too, which an earlier test on the
    # GPU machine imported and Python would otherwise take from sys.modules without the parent
    for name in ["liger_kernel", "liger_kernel.transformers", "liger_kernel.transformers.rope"]:
        monkeypatch.setitem(sys.modules, name, None)
    assert fused_vision_rotary.liger_rotary() is None
    with caplog.at_level(logging.INFO, logger="altcap.models.fused_vision_rotary"):
        torch.testing.assert_close(
            tower_output(model, inputs), tower_output(plain, inputs), rtol=1e-5, atol=1e-6
        )
    assert "pip install liger-kernel" in caplog.text
    assert fused_vision_rotary.kernel_in_use() == "transformers"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="liger's Triton kernel: run on the GPU machine")
def test_ligers_kernel_gives_transformers_rotary_to_bf16_rounding() -> None:
    pytest.importorskip("liger_kernel", reason="liger-kernel is installed on the GPU machine")
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    generator = torch.Generator("cuda").manual_seed(0)
    qkv = torch.randn(4096, 3, 16, 80, device="cuda", generator=generator).bfloat16()
    q, k, _ = qkv.unbind(1)  # the towers' strided views
    freqs = torch.randn(4096, 40, device="cuda", generator=generator)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
    before = qkv.clone()
    with torch.no_grad():
        expected = apply_rotary_pos_emb_vision(q, k, cos, sin)  # not opted in: transformers' own
        fused = fused_vision_rotary.liger_rotary()(q, k, cos, sin)
    assert torch.equal(qkv, before)  # the tower's projections are left as they were
    for got, want in zip(fused, expected, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=2**-7, atol=1e-6)
        assert (got == want).float().mean() > 0.999
