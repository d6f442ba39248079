"""InstructBLIP family on tiny random checkpoints (Llama LM, and a T5 LM)."""

from __future__ import annotations

import _family_checks as checks
import pytest
import torch

VARIANTS = [None, "t5"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip(tiny_model_dir, tmp_path, variant: str | None) -> None:
    checks.check_round_trip(tiny_model_dir("instructblip", variant), "instructblip", variant, tmp_path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_label_masking(tiny_model_dir, variant: str | None) -> None:
    checks.check_label_masking(tiny_model_dir("instructblip", variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_feature_loss_equals_full_loss(tiny_model_dir, variant: str | None) -> None:
    checks.check_cached_loss(tiny_model_dir("instructblip", variant))


def test_cached_feature_loss_with_lora(tiny_model_dir) -> None:
    checks.check_cached_loss_with_lora(tiny_model_dir("instructblip"))


def test_qformer_sees_the_instruction(tiny_model_dir) -> None:
    """Why only the vision tower is cached: the same image gives other Q-Former outputs per prompt."""
    from altcap.models.families.instructblip import run_qformer

    model, processor, family = checks.load(tiny_model_dir("instructblip"))
    image = checks.make_images()[:1] * 2
    inputs = family.build_inputs(processor, image, ["Describe it.", "What color is the car?"], ["a", "a"])
    with torch.no_grad():
        query = run_qformer(model, family.feature_cache.encode_images(model, inputs)["image_embeds"], inputs)
    assert not torch.allclose(query[0], query[1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_batch_with_beams(tiny_model_dir, variant: str | None) -> None:
    checks.check_generate(tiny_model_dir("instructblip", variant))


def test_default_lora_targets(tiny_model_dir) -> None:
    checks.check_default_lora_targets(tiny_model_dir("instructblip"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_text_only_inputs_equal_the_text_part_of_full_inputs(tiny_model_dir, tmp_path, variant) -> None:
    checks.check_text_only_inputs(tiny_model_dir("instructblip", variant), tmp_path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_features_with_text_only_inputs_give_the_full_loss(tiny_model_dir, variant) -> None:
    checks.check_text_only_cached_loss(tiny_model_dir("instructblip", variant))
