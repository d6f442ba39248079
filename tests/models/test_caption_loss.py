"""The chat VLMs' training loss with logits only at the caption positions equals the model's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _family_checks import CAPTIONS, PROMPTS, lora_that_matters, make_images

from altcap.models.caption_loss import accepts_logits_to_keep, caption_loss, predicting_positions
from altcap.models.loading import ModelConfig, load_model
from altcap.models.text_inputs import IGNORE_INDEX


def test_positions_are_those_predicting_a_label_in_any_row() -> None:
    x = IGNORE_INDEX
    labels = torch.tensor([[x, x, 5, 6, x, x], [x, x, x, 7, 8, 9]])
    assert predicting_positions(labels).tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "gemma3", "idefics3", "paligemma"])
def test_loss_and_gradients_equal_the_models_own_with_fewer_logits(
    model_type: str, chat_dir: Callable[[str], Path]
) -> None:
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir(model_type)), device="cpu"))
    model = lora_that_matters(model, family, std=0.05)
    inputs = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    assert family.caption_loss is caption_loss and accepts_logits_to_keep(model)
    projected: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda _module, _args, output: projected.append(output.shape[1])
    )
    results = []
    for loss_of in (lambda: model(**inputs).loss, lambda: caption_loss(model, inputs)):
        model.zero_grad()
        loss = loss_of()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    hook.remove()
    (full_loss, full_grads), (kept_loss, kept_grads) = results
    torch.testing.assert_close(kept_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert full_grads.keys() == kept_grads.keys() and len(full_grads) > 1
    for name in full_grads:
        torch.testing.assert_close(kept_grads[name], full_grads[name], rtol=1e-4, atol=1e-6)
    sequence = inputs["input_ids"].shape[1]
    kept = len(predicting_positions(inputs["labels"]))
    assert projected == [sequence, kept] and kept < sequence  # only positions that predict a caption token


def test_encoder_decoder_models_keep_their_own_loss(chat_dir: Callable[[str], Path]) -> None:
    model, _, _ = load_model(ModelConfig(model_id=str(chat_dir("florence2")), device="cpu"))
    assert not accepts_logits_to_keep(model)
