"""BLIP-2 family on tiny random checkpoints with an OPT (decoder-only) and a T5 (encoder-decoder) LM."""

from __future__ import annotations

import _family_checks as checks
import pytest

VARIANTS = ["opt", "t5"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip(tiny_model_dir, tmp_path, variant: str) -> None:
    checks.check_round_trip(tiny_model_dir("blip2", variant), "blip2", variant, tmp_path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_label_masking(tiny_model_dir, variant: str) -> None:
    checks.check_label_masking(tiny_model_dir("blip2", variant))


def test_t5_labels_are_caption_tokens_only(tiny_model_dir) -> None:
    _, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    inputs = family.build_inputs(processor, checks.make_images()[:1], None, ["a red car"])
    expected = processor.tokenizer("a red car", add_special_tokens=False)["input_ids"]
    assert inputs["labels"][0].tolist() == [*expected, processor.tokenizer.eos_token_id]


def test_opt_prompt_format(tiny_model_dir) -> None:
    _, processor, family = checks.load(tiny_model_dir("blip2", "opt"))
    inputs = family.build_inputs(processor, checks.make_images()[:1], ["Say it."], ["a red car"])
    text = processor.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
    assert text == "Question: Say it. Answer: a red car"


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_feature_loss_equals_full_loss(tiny_model_dir, variant: str) -> None:
    checks.check_cached_loss(tiny_model_dir("blip2", variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_feature_loss_with_lora(tiny_model_dir, variant: str) -> None:
    checks.check_cached_loss_with_lora(tiny_model_dir("blip2", variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_batch_with_beams(tiny_model_dir, variant: str) -> None:
    checks.check_generate(tiny_model_dir("blip2", variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_default_lora_targets(tiny_model_dir, variant: str) -> None:
    checks.check_default_lora_targets(tiny_model_dir("blip2", variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_text_only_inputs_equal_the_text_part_of_full_inputs(tiny_model_dir, tmp_path, variant) -> None:
    checks.check_text_only_inputs(tiny_model_dir("blip2", variant), tmp_path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_features_with_text_only_inputs_give_the_full_loss(tiny_model_dir, variant) -> None:
    checks.check_text_only_cached_loss(tiny_model_dir("blip2", variant))
