"""models/aligned_mlp.py: gated MLPs of unaligned width run on padded copies, with the same outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from altcap.models.aligned_mlp import align_gated_mlps


class GatedMLP(nn.Module):
    """The shape of Qwen2.5-VL's vision MLP (its width, 3,420, is not a multiple of 8)."""

    def __init__(self, hidden: int = 16, width: int = 20, bias: bool = True):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, width, bias=bias)
        self.up_proj = nn.Linear(hidden, width, bias=bias)
        self.down_proj = nn.Linear(width, hidden, bias=bias)
        self.act_fn = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class Tower(nn.Module):
    def __init__(self, width: int = 20, bias: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList([GatedMLP(width=width, bias=bias) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x


def build(width: int = 20, bias: bool = True) -> Tower:
    torch.manual_seed(0)
    return Tower(width, bias).double().requires_grad_(False)


@pytest.mark.parametrize("bias", [True, False])
def test_padded_mlps_give_the_same_output_and_keep_their_parameters(bias):
    tower, x = build(bias=bias), torch.randn(5, 16, dtype=torch.float64)
    expected, state = tower(x), {k: v.clone() for k, v in tower.state_dict().items()}
    assert align_gated_mlps(tower) == ["blocks.0", "blocks.1"]
    assert tower.blocks[0]._altcap_padded_width == 24
    torch.testing.assert_close(tower(x), expected, rtol=1e-12, atol=1e-12)
    assert tower.state_dict().keys() == state.keys()
    assert all(torch.equal(tower.state_dict()[k], v) for k, v in state.items())
    assert align_gated_mlps(tower) == []  # once only


def test_aligned_widths_and_other_modules_are_left_alone():
    assert align_gated_mlps(build(width=24)) == []
    assert align_gated_mlps(nn.Sequential(nn.Linear(4, 4))) == []


LORA = LoraConfig(
    r=2, lora_alpha=4, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False
)


def aligned_tower_with_lora() -> tuple[nn.Module, torch.Tensor]:
    """A tower whose MLPs run padded, then wrapped with LoRA (random, non-zero adapters)."""
    tower = build()
    align_gated_mlps(tower)
    return get_peft_model(tower, LORA), torch.randn(5, 16, dtype=torch.float64)


def test_lora_wrapped_layers_run_the_modules_own_forward():
    wrapped, x = aligned_tower_with_lora()
    reference = get_peft_model(build(), LORA)
    reference.load_state_dict(wrapped.state_dict())
    torch.testing.assert_close(wrapped(x), reference(x))  # the adapter is not bypassed


def test_a_lora_merged_in_place_after_a_wrapped_forward_is_seen():
    wrapped, x = aligned_tower_with_lora()
    with torch.no_grad():
        adapted = wrapped(x)  # the wrapped forward
        merged = wrapped.merge_and_unload()  # edits the base weights through `.data`
        torch.testing.assert_close(merged(x), adapted, rtol=1e-10, atol=1e-10)


def test_weights_that_train_get_gradients_and_changed_weights_are_copied_again():
    tower, x = build(), torch.randn(5, 16, dtype=torch.float64)
    align_gated_mlps(tower)
    tower.requires_grad_(True)
    tower(x).sum().backward()  # a forward that trains these weights: the module's own path
    assert tower.blocks[0].gate_proj.weight.grad is not None
    with torch.no_grad():
        for parameter in tower.parameters():
            parameter.add_(0.1)  # an optimizer step: the copies are stale
        expected = build()
        for parameter in expected.parameters():
            parameter.add_(0.1)
        torch.testing.assert_close(tower(x), expected(x), rtol=1e-12, atol=1e-12)


def test_a_deep_copy_runs_on_its_own_layers():
    tower, x = build(), torch.randn(5, 16, dtype=torch.float64)
    align_gated_mlps(tower)
    twin = copy.deepcopy(tower)
    with torch.no_grad():
        twin.blocks[0].down_proj.weight.zero_()
        twin.blocks[0].down_proj.bias.zero_()
    torch.testing.assert_close(twin.blocks[0](x), torch.zeros_like(x))
    assert not torch.equal(tower.blocks[0](x), torch.zeros_like(x))


def test_qwen2_5_vl_tower_with_its_unaligned_width_gives_the_same_features():
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    torch.manual_seed(0)
    config = Qwen2_5_VLVisionConfig(
        depth=2,
        hidden_size=32,
        intermediate_size=36,
        num_heads=2,
        out_hidden_size=32,
        fullatt_block_indexes=[1],
    )
    tower = Qwen2_5_VisionTransformerPretrainedModel(config).eval()
    grid = torch.tensor([[1, 8, 8]])
    pixels = torch.randn(64, 3 * 2 * 14 * 14)
    with torch.no_grad():
        expected = tower(pixels, grid_thw=grid).last_hidden_state
        assert len(align_gated_mlps(tower)) == 2
        torch.testing.assert_close(
            tower(pixels, grid_thw=grid).last_hidden_state, expected, rtol=1e-5, atol=1e-5
        )


def test_the_copies_move_with_the_module_so_training_can_free_them():
    tower = build()
    align_gated_mlps(tower)
    tower.to("meta")  # what training does to the frozen tower once its features are cached
    assert all(buffer.is_meta for buffer in tower.buffers())
    assert len(list(tower.buffers())) == 2 * 3  # gate-up weight and bias, down weight, per MLP
