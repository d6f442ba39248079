"""Packed vision attention: one call per layer equals transformers' per-span SDPA loop, only the
towers of families with `PackedVisionAttention` get it, and their language models stay on sdpa."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from altcap.models import vision_attention
from altcap.models.loading import ModelConfig, load_model
from altcap.models.registry import families_with, get_family
from altcap.models.vision_attention import VARLEN_ATTENTION, varlen_attention_forward

HEADS, HEAD_DIM = 4, 16


class _VisionAttention(torch.nn.Module):
    # What transformers' sdpa function reads off a vision attention module.
    num_key_value_groups = 1
    is_causal = False


def _packed(
    lengths: list[int], dtype: torch.dtype = torch.float32, device: str = "cpu", head_dim: int = HEAD_DIM
) -> tuple:
    generator = torch.Generator().manual_seed(len(lengths))
    q, k, v = (
        torch.randn(1, HEADS, sum(lengths), head_dim, generator=generator).to(device, dtype) for _ in range(3)
    )
    cu_seqlens = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32, device=device)
    return q, k, v, cu_seqlens


def _per_span_loop(q, k, v, cu_seqlens, scaling):
    # transformers' non-flash branch of Qwen2_5_VLVisionAttention.forward (5.25), verbatim in effect.
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    splits = [torch.split(t, lengths, dim=2) for t in (q, k, v)]
    module = _VisionAttention()
    outs = [
        sdpa_attention_forward(module, a, b, c, None, scaling=scaling, dropout=0.0, is_causal=False)[0]
        for a, b, c in zip(*splits, strict=True)
    ]
    return torch.cat(outs, dim=1)


def _packed_call(q, k, v, cu_seqlens, scaling):
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    out, weights = varlen_attention_forward(
        _VisionAttention(), q, k, v, None, scaling=scaling, dropout=0.0, is_causal=False,
        cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens,
        max_length_q=int(lengths.max()), max_length_k=int(lengths.max()),
    )
    assert weights is None
    return out


@pytest.mark.parametrize(
    "lengths",
    [[5, 16, 16, 3, 16, 7, 1], [37], [4] * 12],
    ids=["uneven", "single-span", "many-equal"],
)
def test_grouped_sdpa_equals_the_per_span_loop(lengths: list[int]) -> None:
    q, k, v, cu_seqlens = _packed(lengths)
    expected = _per_span_loop(q, k, v, cu_seqlens, scaling=0.3)
    got = _packed_call(q, k, v, cu_seqlens, scaling=0.3)
    assert got.shape == (1, sum(lengths), HEADS, HEAD_DIM)  # transformers' flash layout
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_grouped_sdpa_makes_one_call_per_distinct_length(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = F.scaled_dot_product_attention
    counted = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    _packed_call(*_packed([5, 16, 16, 3, 16, 5]), scaling=None)
    assert len(calls) == 3


def test_grouped_sdpa_gradients_equal_the_loops() -> None:
    # lora.adapt_vision trains through the tower's attention.
    grads = []
    for run in (_per_span_loop, _packed_call):
        q, k, v, cu_seqlens = _packed([9, 4, 9, 2])
        for t in (q, k, v):
            t.requires_grad_(True)
        (run(q, k, v, cu_seqlens, 0.25) * torch.linspace(-1, 1, HEAD_DIM)).sum().backward()
        grads.append([t.grad for t in (q, k, v)])
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_without_spans_it_is_transformers_sdpa() -> None:
    q, k, v, _ = _packed([6, 6])
    generator = torch.Generator().manual_seed(0)
    hidden = (torch.rand(12, 12, generator=generator) > 0.7) & ~torch.eye(12, dtype=torch.bool)
    mask = torch.zeros(1, 1, 12, 12).masked_fill(hidden, float("-inf"))
    for kwargs in ({"attention_mask": mask, "is_causal": False}, {"attention_mask": None, "is_causal": True}):
        expected = sdpa_attention_forward(_VisionAttention(), q, k, v, scaling=0.2, **kwargs)[0]
        got = varlen_attention_forward(_VisionAttention(), q, k, v, scaling=0.2, **kwargs)[0]
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def _images() -> list[Image.Image]:
    # Two of one size (equal spans) and one smaller, so grouping has something to merge.
    rng = np.random.default_rng(0)
    sizes = [(112, 84), (112, 84), (56, 84)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _windowed_copy(folder: Path, tmp_path: Path) -> Path:
    # The shared tiny Qwen2.5-VL runs its one block on full attention; here it attends in 56 px
    # windows, as 28 of the real model's 32 blocks do.
    copy = Path(shutil.copytree(folder, tmp_path / "windowed"))
    config = json.loads((copy / "config.json").read_text())
    config["vision_config"]["fullatt_block_indexes"] = []
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def _run_tower_and_captions(folder: Path, choice: str) -> dict:
    model, processor, family = load_model(
        ModelConfig(model_id=str(folder), device="cpu", vision_attention=choice, max_image_pixels=112 * 112)
    )
    inputs = family.build_inputs(processor, _images(), None, None)
    calls = []
    original = F.scaled_dot_product_attention

    def count(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    F.scaled_dot_product_attention = count
    try:
        with torch.no_grad():
            features = family.feature_cache.encode_images(model, inputs)
    finally:
        F.scaled_dot_product_attention = original
    captions = family.generate(model, processor, inputs, {"max_new_tokens": 6, "do_sample": False})
    return {"model": model, "features": features, "captions": captions, "calls": len(calls)}


PACKED_TYPES = [get_family(name).model_types[0] for name in families_with("packed_vision_attention")]


@pytest.mark.parametrize("model_type", PACKED_TYPES)
def test_packed_tower_equals_sdpa_and_captions_are_identical(
    model_type: str, chat_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = chat_dir(model_type)
    if model_type == "qwen2_5_vl":
        folder = _windowed_copy(folder, tmp_path)
    packed, looped = (_run_tower_and_captions(folder, choice) for choice in ("auto", "sdpa"))
    config = packed["model"].config
    assert config.vision_config._attn_implementation == VARLEN_ATTENTION
    assert config.text_config._attn_implementation == "sdpa"
    assert config._attn_implementation == "sdpa"
    assert looped["model"].config.vision_config._attn_implementation == "sdpa"
    assert packed["features"].keys() == looped["features"].keys()
    for key, value in packed["features"].items():
        torch.testing.assert_close(value, looped["features"][key], atol=1e-5, rtol=0)
    assert packed["captions"] == looped["captions"]
    assert packed["calls"] < looped["calls"]
    if model_type == "qwen2_5_vl":
        # 8x6 and 4x6 patch grids in windows of 4x4 patches: 4 + 4 + 2 windows of 16 or 8 patches.
        assert (packed["calls"], looped["calls"]) == (2, 10)


def test_language_model_modules_keep_sdpa(chat_dir: Callable[[str], Path]) -> None:
    model, _, _ = load_model(ModelConfig(model_id=str(chat_dir("qwen2_5_vl")), device="cpu"))
    assert model.model.visual.config._attn_implementation == VARLEN_ATTENTION
    assert model.model.language_model.config._attn_implementation == "sdpa"
    assert model.model.language_model.config is not model.model.visual.config


def test_only_towers_with_the_span_loop_get_it(chat_dir: Callable[[str], Path]) -> None:
    assert set(PACKED_TYPES) == {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "glm4v"}
    model, _, family = load_model(ModelConfig(model_id=str(chat_dir("gemma3")), device="cpu"))
    assert family.packed_vision_attention is None
    assert model.config.vision_config._attn_implementation == "sdpa"


def _strided_like_the_tower(t: torch.Tensor) -> torch.Tensor:
    # The tower's value is a view of its fused qkv projection ([tokens, 3, heads, dim], unbound),
    # not a contiguous tensor: the kernel must take that layout as it comes.
    fused = torch.stack([t[0].transpose(0, 1)] * 3, dim=1)
    view = fused[:, 2].transpose(0, 1).unsqueeze(0)
    assert not view.is_contiguous() and torch.equal(view, t)
    return view


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch's varlen kernel: run on the GPU machine")
def test_varlen_kernel_matches_the_per_span_loop_in_bf16() -> None:
    if vision_attention._VARLEN_ATTN is None:
        pytest.skip(f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn")
    # Qwen2.5-VL at 448 px: 16 windows of 64 patches, plus odd spans; head size 80 as in its tower.
    q, k, v, cu_seqlens = _packed([64] * 16 + [40, 100, 7], torch.bfloat16, "cuda", head_dim=80)
    v = _strided_like_the_tower(v)
    assert vision_attention.can_use_varlen_kernel(q, k, 0.0, False)
    for t in (q, k, v):
        t.requires_grad_(True)
    scaling = 80**-0.5
    got = _packed_call(q, k, v, cu_seqlens, scaling)
    expected = _per_span_loop(q, k, v, cu_seqlens, scaling)
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)
    got_grads = torch.autograd.grad(got.float().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.float().sum(), (q, k, v))
    for a, b in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)
