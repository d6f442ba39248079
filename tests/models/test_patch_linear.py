"""models/patch_linear.py: a stride == kernel Conv3d patch embedding as one matrix product."""

import copy

import torch
from torch import nn

from altcap.models.patch_linear import linear_patch_embeds


class _PatchEmbed(nn.Module):
    def __init__(self, stride: int = 4, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, stride, stride), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.view(-1, 3, 2, 4, 4)).view(-1, 8)


def test_swapped_patch_embedding_equals_the_convolution_and_keeps_its_weight():
    torch.manual_seed(0)
    model = nn.Sequential(_PatchEmbed(bias=True), nn.Linear(8, 8))
    patches = torch.randn(10, 3 * 2 * 4 * 4, dtype=torch.float64)
    model = model.double()
    expected = model(patches)
    names_before = [name for name, _ in model.named_parameters()]
    assert linear_patch_embeds(model) == ["0.proj"]
    torch.testing.assert_close(model(patches), expected, rtol=1e-12, atol=1e-12)
    assert [name for name, _ in model.named_parameters()] == names_before
    assert linear_patch_embeds(model) == []  # already swapped: nothing twice


def test_overlapping_convolutions_are_left_alone_and_bigger_inputs_still_convolve():
    overlapping = _PatchEmbed(stride=2)
    assert linear_patch_embeds(overlapping) == []
    conv = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4))
    clip = torch.randn(2, 3, 4, 8, 8)  # 2 x 2 x 2 patches per input: the conv proper
    expected = conv(clip)
    linear_patch_embeds(conv)
    torch.testing.assert_close(conv(clip), expected)


def test_gradients_reach_the_conv_weight_through_the_view():
    embed = _PatchEmbed()
    linear_patch_embeds(embed)
    embed(torch.randn(4, 96)).sum().backward()
    assert embed.proj.weight.grad is not None and embed.proj.weight.grad.abs().sum() > 0


def test_a_deep_copy_runs_on_its_own_weight():
    embed = _PatchEmbed()
    linear_patch_embeds(embed)
    twin = copy.deepcopy(embed)
    with torch.no_grad():
        twin.proj.weight.zero_()
    patches = torch.randn(4, 96)
    assert torch.equal(twin(patches), torch.zeros(4, 8))
    assert not torch.equal(embed(patches), torch.zeros(4, 8))
