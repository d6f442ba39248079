"""Multimodal rope positions on the host: installed on the families whose models have
`get_rope_index`, and the positions equal the model's own wherever the inputs live."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from altcap.models.loading import ModelConfig, load_model
from altcap.models.rope_index import compute_rope_index_on_host


def _load_with_inputs(folder, device: str = "cpu"):
    model, processor, family = load_model(ModelConfig(model_id=str(folder), device=device, dtype="float32"))
    images = [Image.fromarray(np.full((56 * (i + 1), 56, 3), 40 * i, np.uint8)) for i in range(3)]
    inputs = family.build_inputs(processor, images, ["Describe.", "Describe this.", "What is shown?"])
    return model, {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _positions(get_rope_index, inputs):
    return get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl"])
def test_chat_loader_installs_host_rope_index_with_equal_positions(chat_dir, model_type: str) -> None:
    model, inputs = _load_with_inputs(chat_dir(model_type))
    wrapped = model.model.get_rope_index
    assert wrapped.__wrapped__ is not None  # installed by the chat loader
    assert compute_rope_index_on_host(model) is False  # and only once
    own = type(model.model).get_rope_index.__get__(model.model)
    for got, expected in zip(_positions(wrapped, inputs), _positions(own, inputs), strict=True):
        assert got.device == expected.device and torch.equal(got, expected)


def test_models_without_rope_index_are_left_alone() -> None:
    model = torch.nn.Module()
    model.model = torch.nn.Linear(2, 2)
    assert compute_rope_index_on_host(model) is False
    assert not hasattr(model.model, "get_rope_index")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_positions_of_gpu_inputs_are_computed_on_the_host_and_equal(chat_dir) -> None:
    model, inputs = _load_with_inputs(chat_dir("qwen2_5_vl"), device="cuda")
    own = type(model.model).get_rope_index.__get__(model.model)
    wrapped = _positions(model.model.get_rope_index, inputs)
    for got, expected in zip(wrapped, _positions(own, inputs), strict=True):
        assert got.device.type == "cuda" and torch.equal(got, expected)
