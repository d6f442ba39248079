"""BLIP family on a tiny random checkpoint."""

from __future__ import annotations

import _family_checks as checks


def test_round_trip(tiny_model_dir, tmp_path) -> None:
    checks.check_round_trip(tiny_model_dir("blip"), "blip", None, tmp_path)


def test_label_masking(tiny_model_dir) -> None:
    checks.check_label_masking(tiny_model_dir("blip"))


def test_cached_feature_loss_equals_full_loss(tiny_model_dir) -> None:
    checks.check_cached_loss(tiny_model_dir("blip"))


def test_cached_feature_loss_with_lora(tiny_model_dir) -> None:
    checks.check_cached_loss_with_lora(tiny_model_dir("blip"))


def test_generate_batch_with_beams(tiny_model_dir) -> None:
    checks.check_generate(tiny_model_dir("blip"))


def test_default_lora_targets(tiny_model_dir) -> None:
    checks.check_default_lora_targets(tiny_model_dir("blip"))


def test_text_only_inputs_equal_the_text_part_of_full_inputs(tiny_model_dir, tmp_path) -> None:
    checks.check_text_only_inputs(tiny_model_dir("blip"), tmp_path)


def test_cached_features_with_text_only_inputs_give_the_full_loss(tiny_model_dir) -> None:
    checks.check_text_only_cached_loss(tiny_model_dir("blip"))
