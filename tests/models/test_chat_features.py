"""The chat VLMs' feature cache: captured tower outputs, rows per image, and LoRA on top of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _family_checks import CAPTIONS, PROMPTS, lora_that_matters, make_images

from altcap.models.chat_features import (
    IMAGE_FEATURES,
    TILE_TOKENS,
    capture_image_outputs,
    encode_chat_images,
    forward_from_chat_features,
    split_rows,
)
from altcap.models.loading import ModelConfig, load_model


def test_split_rows_refuses_features_that_do_not_fill_the_image_tokens() -> None:
    rows = split_rows((torch.ones(2, 4), torch.zeros(3, 4)), [2, 3])
    assert [tuple(row.shape) for row in rows] == [(2, 4), (3, 4)]
    assert torch.equal(split_rows(torch.ones(2, 3, 4), [3, 3])[1], torch.ones(3, 4))
    with pytest.raises(ValueError, match="5 image feature rows for 6 image tokens"):
        split_rows(torch.ones(5, 4), [3, 3])


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "gemma3", "smolvlm"])
def test_rows_follow_each_images_token_count_and_the_language_model_never_runs(
    model_type: str, chat_dir: Callable[[str], Path]
) -> None:
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir(model_type)), device="cpu"))
    inputs = family.build_inputs(processor, make_images(), PROMPTS)
    calls = []
    hook = model.get_decoder().register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        features = encode_chat_images(model, inputs)
        assert capture_image_outputs(model, inputs).pooler_output is not None
    hook.remove()
    assert not calls, "the cache fill must stop the forward before the language model"
    assert "get_image_features" not in vars(model.model)  # the stop is removed again
    image_id = model.config.image_token_id
    counts = (inputs["input_ids"] == image_id).sum(dim=1)
    assert features[IMAGE_FEATURES].shape[:2] == (3, int(counts.max()))
    for row, count in enumerate(counts.tolist()):  # zero padding only after each row's own features
        assert features[IMAGE_FEATURES][row, :count].abs().sum(dim=-1).gt(0).all()
        assert not features[IMAGE_FEATURES][row, count:].any()
    assert features[TILE_TOKENS].shape == (3,)


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "smolvlm"])
def test_lora_trains_from_cached_features_as_from_pixels(
    model_type: str, chat_dir: Callable[[str], Path]
) -> None:
    """With LoRA on the language model the cached loss and its gradients equal the full forward's."""
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir(model_type)), device="cpu"))
    model = lora_that_matters(model, family, std=0.05)
    inputs = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    with torch.no_grad():
        features = encode_chat_images(model, family.build_inputs(processor, make_images(), PROMPTS))
    text = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS, with_pixels=False)
    grads = []
    for loss_of in (lambda: model(**inputs).loss, lambda: forward_from_chat_features(model, features, text)):
        model.zero_grad()
        loss = loss_of()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        grads[-1]["loss"] = loss.detach()
    full, cached = grads
    assert full.keys() == cached.keys() and len(full) > 1
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=1e-4, atol=1e-6)


def test_a_transformers_without_the_precomputed_features_seam_gets_the_fix() -> None:
    from altcap.config import ConfigError

    class OldForward(torch.nn.Module):
        def forward(self, input_ids=None, pixel_values=None):  # no mm_encoder_outputs
            raise AssertionError("never runs")

    with pytest.raises(ConfigError, match=r"OldForward\.forward .* set feature_cache\.enabled=false"):
        encode_chat_images(OldForward(), {"input_ids": torch.ones(1, 2, dtype=torch.long)})
