"""Checks every family must pass on its tiny model; each test_<family>.py runs them."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from altcap.models.loading import ModelConfig, apply_lora, load_model
from altcap.models.registry import ModelFamily
from altcap.models.text_inputs import IGNORE_INDEX
from altcap.models.tiny import build_tiny_model

CAPTIONS = ["a dog runs across the green grass", "two children play on the beach", "a red car"]
PROMPTS: list[str | None] = [None, "Describe the scene for a blind reader.", None]


def make_images() -> list[Image.Image]:
    """Three RGB images of different sizes and aspect ratios (LLaVA tiles them differently)."""
    sizes = [(32, 32), (64, 32), (40, 72)]
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def load(folder: Path) -> tuple[Any, Any, ModelFamily]:
    return load_model(ModelConfig(model_id=str(folder), device="cpu"))


def check_round_trip(folder: Path, family: str, variant: str | None, tmp_path: Path) -> None:
    """from_pretrained gives the family, and a rebuild with the same seed has identical weights."""
    model, _, loaded_family = load(folder)
    assert loaded_family.name == family
    assert type(model).__name__ == loaded_family.hf_class
    frozen = [operator.attrgetter(name)(model) for name in loaded_family.feature_cache.frozen_modules]
    assert frozen and all(isinstance(part, torch.nn.Module | torch.nn.Parameter) for part in frozen)
    again = build_tiny_model(family, tmp_path / "again", seed=0, variant=variant)
    first, second = load_file(folder / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = load_file(
        build_tiny_model(family, tmp_path / "other", seed=1, variant=variant) / "model.safetensors"
    )
    assert any(not torch.equal(first[k], other[k]) for k in first)


def check_label_masking(folder: Path) -> None:
    """Unmasked labels decode to exactly the caption (+ EOS); prompt/image/padding are all -100."""
    _, processor, family = load(folder)
    inputs = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    tokenizer = processor.tokenizer
    for row, caption in enumerate(CAPTIONS):
        labels = inputs["labels"][row]
        kept = labels[labels != IGNORE_INDEX]
        # Decoded without skipping special tokens, so a leaked BOS or image token would show.
        assert tokenizer.decode(kept[:-1], skip_special_tokens=False).strip() == caption
        assert kept[-1].item() in {tokenizer.eos_token_id, tokenizer.sep_token_id}
        image_token = getattr(processor, "image_token", None)
        if image_token is not None and "input_ids" in inputs and not _is_seq2seq(inputs):
            image_id = tokenizer.convert_tokens_to_ids(str(image_token))
            assert (labels[inputs["input_ids"][row] == image_id] == IGNORE_INDEX).all()
        if not _is_seq2seq(inputs):
            assert (labels[inputs["attention_mask"][row] == 0] == IGNORE_INDEX).all()


def _is_seq2seq(inputs: dict[str, Any]) -> bool:
    return inputs["labels"].shape != inputs["input_ids"].shape


def check_cached_loss(folder: Path) -> None:
    """Loss from encode_images + forward_from_features equals the full forward loss."""
    model, processor, family = load(folder)
    inputs = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    with torch.no_grad():
        full = model(**inputs).loss
        features = family.feature_cache.encode_images(model, inputs)
        cached = family.feature_cache.forward_from_features(model, features, inputs)
    assert set(features) == set(family.feature_cache.feature_keys)
    assert torch.isfinite(full)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


def lora_that_matters(model: Any, family: ModelFamily, std: float = 0.02) -> Any:
    """`model` with r=4 LoRA (seed 0) whose B matrices are random: B starts at zero, and an adapter
    that changes nothing would let every equivalence check pass."""
    torch.manual_seed(0)
    peft_model = apply_lora(model, family, None, r=4, alpha=8, dropout=0.0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=std)
    return peft_model


def caption_loss_and_grads(model: Any, family: ModelFamily, inputs: dict[str, Any]) -> tuple[Any, dict]:
    """The family's training loss on `inputs` and a copy of every trainable parameter's gradient
    (copies: graphed passes may hand back gradients in buffers the next pass overwrites)."""
    model.zero_grad(set_to_none=True)
    loss = family.caption_loss(model, inputs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def check_cached_loss_with_lora(folder: Path) -> None:
    """The equivalence also holds for a LoRA-wrapped model (the training setup), with gradients."""
    model, processor, family = load(folder)
    peft_model = lora_that_matters(model, family)
    inputs = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    full = peft_model(**inputs).loss
    cache = family.feature_cache
    cached = cache.forward_from_features(peft_model, cache.encode_images(peft_model, inputs), inputs)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    cached.backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for n, p in peft_model.named_parameters()
        if "lora_" in n
    )


def check_generate(folder: Path) -> None:
    """Batched beam search returns one string per image, of the forced length when min=max."""
    model, processor, family = load(folder)
    inputs = family.build_inputs(processor, make_images(), PROMPTS)
    assert "labels" not in inputs
    settings = {"num_beams": 2, "max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
    decoded_lengths: list[int] = []
    real_batch_decode = processor.tokenizer.batch_decode

    def recording_batch_decode(sequences, **kwargs):
        decoded_lengths.extend(len(row) for row in sequences)
        return real_batch_decode(sequences, **kwargs)

    processor.tokenizer.batch_decode = recording_batch_decode
    captions = family.generate(model, processor, inputs, settings)
    # Exactly the 4 new tokens are decoded (an encoder-decoder output also starts with its start token).
    allowed = {4, 5} if model.config.is_encoder_decoder or _has_seq2seq_lm(model) else {4}
    assert decoded_lengths and set(decoded_lengths) <= allowed, decoded_lengths
    assert len(captions) == 3
    assert all(isinstance(c, str) for c in captions)
    one = family.generate(
        model, processor, family.build_inputs(processor, make_images()[:1], PROMPTS[:1]), settings
    )
    assert one[0] == captions[0], "batching (padding) must not change a caption"


def _has_seq2seq_lm(model: Any) -> bool:
    text_config = getattr(model.config, "text_config", None)
    return bool(getattr(text_config, "is_encoder_decoder", False))


def check_default_lora_targets(folder: Path) -> None:
    """Default targets hit only the language model's q/k/v projections."""
    model, _, family = load(folder)
    peft_model = apply_lora(model, family, None, r=4, alpha=8, dropout=0.0)
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_modules() if n.endswith(".lora_A")}
    assert wrapped
    assert all(family.lora_scope in name for name in wrapped)
    assert {name.rsplit(".", 1)[-1] for name in wrapped} <= set(family.default_lora_targets)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def check_text_only_inputs(folder: Path, tmp_path: Path) -> None:
    """with_pixels=False gives exactly the full inputs minus the pixel tensors, from PIL images,
    from image files (never decoded) and from (height, width) pairs; generation inputs too."""
    _, processor, family = load(folder)
    images = make_images()
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        image.save(paths[-1])
    sizes = [(image.height, image.width) for image in images]
    for captions in (CAPTIONS, None):
        full = family.build_inputs(processor, images, PROMPTS, captions)
        expected = {k: v for k, v in full.items() if not k.startswith("pixel_")}
        assert "pixel_values" in full and "input_ids" in expected
        for source in (images, paths, sizes):
            text_only = family.build_inputs(processor, source, PROMPTS, captions, with_pixels=False)
            assert set(text_only) == set(expected)
            for key, value in expected.items():
                assert torch.equal(text_only[key], value), key


def check_text_only_cached_loss(folder: Path) -> None:
    """Cached features + text-only inputs give the full forward's loss (what training with the cache runs)."""
    model, processor, family = load(folder)
    full_inputs = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    text_only = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS, with_pixels=False)
    assert "pixel_values" not in text_only
    with torch.no_grad():
        full = model(**full_inputs).loss
        features = family.feature_cache.encode_images(model, full_inputs)
        cached = family.feature_cache.forward_from_features(model, features, text_only)
    assert torch.isfinite(full)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
