"""train/run.py keep_lora_inputs_in_compute_dtype: LoRA layers take autocast's bf16 input as it is,
instead of PEFT casting it to their fp32 weights and autocast casting it back."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from altcap.train.run import keep_lora_inputs_in_compute_dtype

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_bf16_lora_lm(dropout: float) -> torch.nn.Module:
    """A bf16 2-layer Qwen2 LM whose LoRA weights PEFT keeps in fp32, as `altcap train` loads it."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS, init_lora_weights=False
    )
    model = get_peft_model(model, lora).train()
    assert (
        model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.dtype
        == torch.float32
    )
    return model


def autocast_step(model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    ids = torch.arange(24).remainder(97).reshape(2, 12)
    torch.manual_seed(1)
    with torch.autocast("cpu", torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_without_dropout_loss_and_gradients_are_bitwise_equal():
    loss, grads = autocast_step(build_bf16_lora_lm(dropout=0.0))
    model = build_bf16_lora_lm(dropout=0.0)
    assert keep_lora_inputs_in_compute_dtype(model) == 2 * len(TARGETS)
    lean_loss, lean_grads = autocast_step(model)
    assert torch.equal(lean_loss, loss)
    assert grads.keys() == lean_grads.keys()
    for name, grad in grads.items():
        assert torch.equal(lean_grads[name], grad), name


def dropout_input_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    seen = []
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.register_forward_hook(lambda _m, args, _out: seen.append(args[0].dtype))
    return seen


def test_dropout_runs_on_the_bf16_input_and_every_adapter_still_learns():
    peft_default = build_bf16_lora_lm(dropout=0.1)
    seen_default = dropout_input_dtypes(peft_default)
    autocast_step(peft_default)
    assert set(seen_default) == {torch.float32}  # what PEFT does on its own
    model = build_bf16_lora_lm(dropout=0.1)
    seen = dropout_input_dtypes(model)
    keep_lora_inputs_in_compute_dtype(model)
    loss, grads = autocast_step(model)
    assert torch.isfinite(loss)
    assert len(seen) == len(seen_default) and set(seen) == {torch.bfloat16}
    assert all(
        grad is not None and grad.dtype == torch.float32 and grad.abs().sum() > 0 for grad in grads.values()
    )


def test_outside_autocast_peft_still_casts_so_probes_and_lean_swaps_run():
    from altcap.train.lean_activations import make_activations_lean

    model = build_bf16_lora_lm(dropout=0.1)
    keep_lora_inputs_in_compute_dtype(model)
    ids = torch.arange(24).remainder(97).reshape(2, 12)
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()  # no autocast: PEFT's own cast
    make_activations_lean(model)  # its probes run outside autocast (the H100 failure this guards)
    loss, grads = autocast_step(model)
    assert torch.isfinite(loss) and all(grad is not None for grad in grads.values())
