"""Text inputs without the image processor: splices are read once per image size, checked on the
first batch, and any splice that differs from the processor's output turns them off."""

from __future__ import annotations

import logging

import pytest
import torch
from _family_checks import CAPTIONS, PROMPTS, make_images

from altcap.models import image_token_splices
from altcap.models.chat_vlm import _run_processor
from altcap.models.loading import ModelConfig, load_model

SIZES = [(image.height, image.width) for image in make_images()]


def _load(chat_dir, model_type: str):
    _, processor, family = load_model(ModelConfig(model_id=str(chat_dir(model_type)), device="cpu"))
    return processor, family


def _expected(processor, family, captions):
    full = family.build_inputs(processor, make_images(), PROMPTS, captions)
    return {key: value for key, value in full.items() if not key.startswith("pixel_")}


def _assert_equal(batch, expected) -> None:
    assert batch.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(batch[key], value), key


def _counting_runs(monkeypatch) -> list[int]:
    calls: list[int] = []

    def run(processor, images, texts, side):
        calls.append(len(images))
        return _run_processor(processor, images, texts, side)

    monkeypatch.setattr("altcap.models.chat_vlm._run_processor", run)
    return calls


@pytest.mark.parametrize("model_type", ["smolvlm", "qwen2_5_vl"])
def test_batches_after_the_first_never_call_the_processor(chat_dir, model_type, monkeypatch) -> None:
    processor, family = _load(chat_dir, model_type)
    expected = [_expected(processor, family, captions) for captions in (CAPTIONS, CAPTIONS[::-1])]
    calls = _counting_runs(monkeypatch)
    first = family.build_inputs(processor, SIZES, PROMPTS, CAPTIONS, with_pixels=False)
    assert calls  # one row per size read off the processor, and the first batch checked
    calls.clear()
    second = family.build_inputs(processor, SIZES, PROMPTS, CAPTIONS[::-1], with_pixels=False)
    assert calls == []
    _assert_equal(first, expected[0])
    _assert_equal(second, expected[1])


def test_a_wrong_splice_is_caught_by_the_first_batch_check_and_said_once(
    chat_dir, monkeypatch, caplog
) -> None:
    processor, family = _load(chat_dir, "smolvlm")
    expected = _expected(processor, family, CAPTIONS)
    read = image_token_splices.read_splice

    def one_token_short(*args):
        splice = read(*args)
        return splice and image_token_splices.ImageSplice(
            splice.placeholder, splice.expansion[:-1], splice.token_values, splice.image_values
        )

    monkeypatch.setattr(image_token_splices, "read_splice", one_token_short)
    with caplog.at_level(logging.INFO, logger="altcap.models.image_token_splices"):
        for _ in range(2):
            batch = family.build_inputs(processor, SIZES, PROMPTS, CAPTIONS, with_pixels=False)
            _assert_equal(batch, expected)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "differ from the processor's (input_ids)" in said[0]


def test_rows_without_a_splice_are_built_by_the_processor_on_blank_images(chat_dir, monkeypatch) -> None:
    processor, family = _load(chat_dir, "qwen2_5_vl")
    expected = _expected(processor, family, CAPTIONS)
    monkeypatch.setattr(image_token_splices, "read_splice", lambda *args: None)
    calls = _counting_runs(monkeypatch)
    for _ in range(2):
        _assert_equal(family.build_inputs(processor, SIZES, PROMPTS, CAPTIONS, with_pixels=False), expected)
    assert calls == [3, 3]  # each batch once through the processor, none decoded
