"""LoRA on a chat VLM's projector and vision tower (`lora.adapt_projector`, `lora.adapt_vision`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _family_checks import CAPTIONS, PROMPTS, make_images

from altcap.models.chat_lora import add_part_targets, find_part_layers
from altcap.models.loading import ModelConfig, ModelLoadError, apply_lora, load_model
from altcap.models.registry import get_family


def _wrapped(model: torch.nn.Module) -> set[str]:
    return {n.removesuffix(".lora_A") for n, _ in model.named_modules() if n.endswith(".lora_A")}


@pytest.mark.parametrize(
    ("model_type", "part", "where"),
    [
        ("qwen2_5_vl", "projector", ".visual.merger."),
        ("qwen2_5_vl", "vision", ".visual.blocks."),
        ("smolvlm", "projector", ".connector."),
        ("smolvlm", "vision", ".vision_model."),
    ],
)
def test_part_lora_wraps_the_part_and_one_step_trains_it(
    model_type: str, part: str, where: str, chat_dir: Callable[[str], Path]
) -> None:
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir(model_type)), device="cpu"))
    part_layers = find_part_layers(model, part)
    targets = add_part_targets(model, family, ["q_proj", "v_proj"], [part])
    torch.manual_seed(0)
    peft_model = apply_lora(model, family, targets, r=4, alpha=8, dropout=0.0, scope="")
    wrapped = {name.removeprefix("base_model.model.") for name in _wrapped(peft_model)}
    assert part_layers and set(part_layers) <= wrapped and all(where in f".{n}" for n in part_layers)
    language = wrapped - set(part_layers)
    assert language and all(n.rsplit(".", 1)[-1] in {"q_proj", "v_proj"} for n in language)
    assert all(family.lora_scope in n for n in language)  # a vision q_proj is never a language target
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model(**family.build_inputs(processor, make_images()[:2], PROMPTS[:2], CAPTIONS[:2])).loss.backward()
    optimizer.step()
    changed = {n for n, p in peft_model.named_parameters() if n in before and not torch.equal(p, before[n])}
    assert any(where in n and "lora_B" in n for n in changed), f"no {part} LoRA weight changed"


def test_a_family_without_part_lora_names_the_field(chat_dir: Callable[[str], Path]) -> None:
    model, _, family = load_model(ModelConfig(model_id=str(chat_dir("qwen2_5_vl")), device="cpu"))
    without = type(family)(**{**vars(family), "part_lora": None})
    with pytest.raises(ModelLoadError, match=r"lora\.adapt_vision=true: no vision Linear layer .*set lora"):
        add_part_targets(model, without, ["q_proj"], ["vision"])


def test_every_chat_family_declares_part_lora_and_the_old_ones_do_not() -> None:
    assert get_family("qwen2_5_vl").part_lora is not None and get_family("paligemma").part_lora is not None
    assert get_family("blip2").part_lora is None
