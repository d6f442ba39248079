"""LLaVA-NeXT family on a tiny random checkpoint (chat template, any-resolution tiling)."""

from __future__ import annotations

import _family_checks as checks


def test_round_trip(tiny_model_dir, tmp_path) -> None:
    checks.check_round_trip(tiny_model_dir("llava_next"), "llava_next", None, tmp_path)


def test_label_masking(tiny_model_dir) -> None:
    checks.check_label_masking(tiny_model_dir("llava_next"))


def test_prompt_uses_chat_template(tiny_model_dir) -> None:
    _, processor, family = checks.load(tiny_model_dir("llava_next"))
    inputs = family.build_inputs(processor, checks.make_images()[:1], ["Say it."], ["a red car"])
    text = processor.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=False)
    assert text.startswith("<s>[INST] <image>")
    assert text.endswith("\nSay it. [/INST] a red car</s>")


def test_any_resolution_tiling(tiny_model_dir) -> None:
    """Images of other aspect ratios get other tile counts, so other numbers of image tokens."""
    _, processor, family = checks.load(tiny_model_dir("llava_next"))
    inputs = family.build_inputs(processor, checks.make_images())
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    counts = (inputs["input_ids"] == image_id).sum(dim=1).tolist()
    assert len(set(counts)) > 1
    assert inputs["pixel_values"].shape[1] > 1


def test_cached_feature_loss_equals_full_loss(tiny_model_dir) -> None:
    checks.check_cached_loss(tiny_model_dir("llava_next"))


def test_cached_feature_loss_with_lora(tiny_model_dir) -> None:
    checks.check_cached_loss_with_lora(tiny_model_dir("llava_next"))


def test_generate_batch_with_beams(tiny_model_dir) -> None:
    checks.check_generate(tiny_model_dir("llava_next"))


def test_default_lora_targets_skip_the_vision_tower(tiny_model_dir) -> None:
    checks.check_default_lora_targets(tiny_model_dir("llava_next"))


def test_text_only_inputs_equal_the_text_part_of_full_inputs(tiny_model_dir, tmp_path) -> None:
    checks.check_text_only_inputs(tiny_model_dir("llava_next"), tmp_path)


def test_cached_features_with_text_only_inputs_give_the_full_loss(tiny_model_dir) -> None:
    checks.check_text_only_cached_loss(tiny_model_dir("llava_next"))


def test_text_only_inputs_read_image_headers_without_decoding(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """Sizes come from the file header: decoding pixels (ImageFile.load) would defeat the purpose."""
    from PIL import ImageFile

    _, processor, family = checks.load(tiny_model_dir("llava_next"))
    images = checks.make_images()
    paths = [tmp_path / f"{index}.jpg" for index in range(len(images))]
    for image, path in zip(images, paths, strict=True):
        image.save(path)
    expected = family.build_inputs(processor, images, checks.PROMPTS, checks.CAPTIONS)

    def refuse_decode(self, *args, **kwargs):
        raise AssertionError(f"decoded {self.filename}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_decode)
    text_only = family.build_inputs(processor, paths, checks.PROMPTS, checks.CAPTIONS, with_pixels=False)
    assert text_only["image_sizes"].tolist() == expected["image_sizes"].tolist()
    assert text_only["input_ids"].equal(expected["input_ids"])
