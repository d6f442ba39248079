"""Lean activations: the same loss and gradients bit for bit, less kept for backward."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

from altcap.train.lean_activations import is_gated_mlp, make_activations_lean

HIDDEN, INTERMEDIATE, LAYERS, TOKENS = 64, 160, 2, 24


def build_lora_lm(dtype: torch.dtype) -> torch.nn.Module:
    """A 2-layer Qwen2 LM with LoRA (dropout on) on every linear, as altcap trains chat VLMs."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=97,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config).to(dtype)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=targets, init_lora_weights=False)
    return get_peft_model(model, lora).train()


def loss_and_grads(model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One seeded forward and backward (the seed fixes LoRA's dropout masks)."""
    ids = torch.arange(TOKENS).remainder(97).reshape(2, TOKENS // 2)
    torch.manual_seed(1)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def kept_bytes(model: torch.nn.Module) -> int:
    """Bytes autograd keeps for backward over one forward (each storage counted once, weights not)."""
    weights = {p.data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.data_ptr() not in weights:
            seen[tensor.data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    ids = torch.arange(TOKENS).remainder(97).reshape(2, TOKENS // 2)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        torch.manual_seed(1)
        model(input_ids=ids, labels=ids)
    return sum(seen.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_model_has_the_same_loss_and_gradients(dtype):
    model = build_lora_lm(dtype)
    lean = copy.deepcopy(model)
    counts = make_activations_lean(lean)
    # bf16 norms upcast and keep an fp32 copy; in fp32 that copy is the input itself: nothing to gain.
    assert counts.gated_mlps == LAYERS
    assert counts.norms == (2 * LAYERS + 1 if dtype == torch.bfloat16 else 0)
    loss, grads = loss_and_grads(model)
    lean_loss, lean_grads = loss_and_grads(lean)
    assert torch.equal(loss, lean_loss)  # forward bit for bit
    assert grads.keys() == lean_grads.keys() and len(grads) == 7 * LAYERS * 2
    for name, grad in grads.items():
        if dtype == torch.float32:  # MLPs only: the same kernels as autograd's, bit for bit
            assert torch.equal(grad, lean_grads[name]), name
        else:  # + norms: their gradient written out in fp32, equal to autograd's to rounding
            torch.testing.assert_close(lean_grads[name], grad, rtol=2e-2, atol=1e-3, msg=name)


def test_lean_model_keeps_the_activation_and_the_fp32_norm_copies_no_longer():
    model = build_lora_lm(torch.bfloat16)
    before = kept_bytes(model)
    make_activations_lean(model)
    after = kept_bytes(model)
    # Per token: each layer's act(gate) (INTERMEDIATE bf16 values) and, per norm, its fp32 copy
    # (4 B a value) replaced by its bf16 input (2 B a value); one fp32 scale a row either way. The
    # first layer's input norm reads the frozen embeddings: no graph, nothing kept before or after.
    norms_with_graph = 2 * LAYERS
    expected = TOKENS * (LAYERS * INTERMEDIATE * 2 + norms_with_graph * HIDDEN * 2)
    assert before - after == expected


class SumMLP(torch.nn.Module):
    """A gated MLP's parts computing something else (a sum, not a product): never swapped."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.gate_proj, self.up_proj = torch.nn.Linear(width, 16), torch.nn.Linear(width, 16)
        self.down_proj, self.act_fn = torch.nn.Linear(16, width), torch.nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) + self.up_proj(x))


def test_an_mlp_computing_something_else_is_left_alone():
    mlp = SumMLP()
    assert is_gated_mlp(mlp)
    rng_before = torch.random.get_rng_state()
    assert make_activations_lean(mlp).gated_mlps == 0
    assert "forward" not in vars(mlp) and not hasattr(mlp, "lean_activation")  # left as it was
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the probe drew from its own generator


def test_alike_modules_share_one_probe_and_an_unlike_one_gets_its_own(monkeypatch):
    from altcap.train import lean_activations

    model = build_lora_lm(torch.bfloat16)
    model.add_module("odd_mlp", SumMLP(HIDDEN).to(torch.bfloat16))
    probed = []
    probe = lean_activations.probe_matches
    monkeypatch.setattr(lean_activations, "probe_matches", lambda m, *a: probed.append(m) or probe(m, *a))
    counts = make_activations_lean(model)
    assert counts.gated_mlps == LAYERS and counts.norms == 2 * LAYERS + 1  # every alike module swapped
    assert "forward" not in vars(model.odd_mlp)
    # One probe for the LoRA-wrapped MLPs, one for the norms, one for the odd MLP (2 layers, 5 norms).
    assert sorted(type(m).__name__ for m in probed) == ["Qwen2MLP", "Qwen2RMSNorm", "SumMLP"]


def test_a_layer_norm_is_not_swapped():
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.LayerNorm(32)).to(torch.bfloat16)
    model[1].requires_grad_(False)
    assert make_activations_lean(model).norms == 0


@pytest.mark.parametrize("norm_class", [Qwen2RMSNorm, Gemma3RMSNorm])
def test_each_rms_norm_variant_gives_autograds_input_gradient(norm_class):
    torch.manual_seed(0)
    norm = norm_class(HIDDEN).to(torch.bfloat16)
    torch.nn.init.normal_(norm.weight, std=0.5)  # Gemma's starts at zero, Qwen's at one: both vary
    norm.requires_grad_(False)
    lean = copy.deepcopy(norm)
    assert make_activations_lean(torch.nn.ModuleList([lean])).norms == 1
    x = (torch.randn(3, 5, HIDDEN) * 3).to(torch.bfloat16)
    grad = torch.randn(3, 5, HIDDEN).to(torch.bfloat16)
    outputs, grads = [], []
    for module in (norm, lean):
        leaf = x.clone().requires_grad_(True)
        out = module(leaf)
        out.backward(grad)
        outputs.append(out)
        grads.append(leaf.grad)
    assert torch.equal(outputs[0], outputs[1])
    # fp32 maths on both sides, rounded once to bf16: at most one bf16 step apart.
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-2, atol=1e-2)
    assert (grads[1] != grads[0]).float().mean() < 0.05
