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


@pytest.mark.slow
def test_t5_beam_search_without_cross_attention_reorder_gives_the_same_ids(tiny_model_dir) -> None:
    import torch

    from altcap.models.text_inputs import beam_search_cache_without_cross_reorder

    model, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    images = checks.make_images() * 3
    inputs = {k: v for k, v in family.build_inputs(processor, images, None).items() if k != "labels"}
    settings = {"num_beams": 3, "num_return_sequences": 3, "max_new_tokens": 6, "min_new_tokens": 6}
    reference = model.generate(**inputs, **settings)
    cache_kwargs = beam_search_cache_without_cross_reorder()
    (cache,) = cache_kwargs.values()
    reorders = {"self": 0, "cross": 0}
    for part in ("self", "cross"):
        layer_cache = getattr(cache, f"{part}_attention_cache")
        original = layer_cache.reorder_cache

        def counting(beam_idx, part=part, original=original):
            reorders[part] += 1
            return original(beam_idx)

        layer_cache.reorder_cache = counting
    shared = model.generate(**inputs, **settings, **cache_kwargs)
    assert reorders["self"] > 0 and reorders["cross"] == 0
    assert torch.equal(shared, reference)
    # The family's generate uses it for beam search on T5, with the same captions.
    captions = family.generate(model, processor, inputs, {"num_beams": 3, "max_new_tokens": 6})
    plain = processor.tokenizer.batch_decode(
        model.generate(**inputs, num_beams=3, max_new_tokens=6), skip_special_tokens=True
    )
    assert captions == [text.strip() for text in plain]
