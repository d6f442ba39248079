"""The generic chat-VLM family: prompt/label layout, length limits, LoRA scope, output cleaning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from _family_checks import CAPTIONS, PROMPTS, make_images

from altcap.models.chat_vlm import (
    clean_caption,
    find_end_token,
    render_turns,
    stop_token_ids,
)
from altcap.models.loading import ModelConfig, apply_lora, load_model, load_processor
from altcap.models.text_inputs import IGNORE_INDEX


def _load(folder: Path, **settings) -> tuple:
    return load_model(ModelConfig(model_id=str(folder), device="cpu", **settings))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\nthe user wants a caption\n</think>\n\na dog on grass", "a dog on grass"),
        ("</think> a dog on grass", "a dog on grass"),
        ("a dog on grass<|im_start|>user\nmore", "a dog on grass"),
        ("<think>never closed", ""),
        ("  a dog  ", "a dog"),
    ],
)
def test_clean_caption_drops_thinking_and_later_turns(text: str, expected: str) -> None:
    assert clean_caption(text, ("<|im_start|>",)) == expected


@pytest.mark.parametrize(
    ("model_type", "end"),
    [
        ("qwen2_5_vl", "<|im_end|>"),
        ("gemma3", "<end_of_turn>"),
        ("smolvlm", "<end_of_utterance>"),
        ("glm4v", None),
    ],
)
def test_end_token_is_the_templates_end_of_turn_else_eos(model_type: str, end: str | None, chat_dir) -> None:
    _, processor, _ = _load(chat_dir(model_type))
    prompt, _, after = render_turns(processor, "Describe it.", "a cat")
    assert prompt.endswith(("\n", ":"))
    expected = end or processor.tokenizer.eos_token  # GLM's template closes no turn
    assert find_end_token(processor.tokenizer, after) == expected
    assert processor.tokenizer.convert_tokens_to_ids(expected) in stop_token_ids(processor)


def test_prompt_too_long_for_max_length_names_the_row_and_counts(chat_dir) -> None:
    _, processor, family = _load(chat_dir("qwen2_5_vl"), max_length=20)
    with pytest.raises(
        ValueError, match=r"row 0 \(caption 'a dog runs.*image \+ prompt take \d+ tokens.*max_length=20"
    ):
        family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)


@pytest.mark.parametrize("model_type", ["smolvlm", "qwen2_5_vl"])
def test_the_processor_alone_has_the_image_budget_and_max_length_of_the_loaded_one(
    model_type: str, chat_dir
) -> None:
    # train's first-batch check loads the processor alone: it must see the image tokens and the
    # length limit training will, or a too-long prompt passes the check and fails mid-run.
    settings = {"max_image_pixels": 128 * 128, "max_length": 77}
    _, loaded, family = _load(chat_dir(model_type), **settings)
    alone = load_processor(family, ModelConfig(model_id=str(chat_dir(model_type)), device="cpu", **settings))
    default = load_processor(family, ModelConfig(model_id=str(chat_dir(model_type)), device="cpu"))
    assert alone.image_processor.to_dict() == loaded.image_processor.to_dict()
    assert alone.image_processor.to_dict() != default.image_processor.to_dict()
    assert alone.tokenizer.model_max_length == loaded.tokenizer.model_max_length == 77


def test_long_rows_lose_caption_tokens_only_with_one_warning(
    chat_dir, caplog: pytest.LogCaptureFixture
) -> None:
    _, processor, family = _load(chat_dir("qwen2_5_vl"))
    full = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    lengths = full["attention_mask"].sum(dim=1)
    limit = int(lengths.max()) - 3
    processor.tokenizer.model_max_length = limit
    with caplog.at_level(logging.WARNING, logger="altcap.models.chat_vlm"):
        cut = family.build_inputs(processor, make_images(), PROMPTS, CAPTIONS)
    # every warning the user sees (transformers' loggers may propagate after other tests)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"{int((lengths > limit).sum())} of 3 rows cut to max_length={limit} (caption tokens only)"
    ]
    assert cut["input_ids"].shape[1] == limit
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal((cut["input_ids"] == image_id).sum(dim=1), (full["input_ids"] == image_id).sum(dim=1))
    assert torch.equal(cut["input_ids"], full["input_ids"][:, :limit])
    for row in range(3):
        kept = cut["labels"][row][cut["labels"][row] != IGNORE_INDEX]
        assert CAPTIONS[row].startswith(processor.tokenizer.decode(kept).strip()[:5])
    model, _, _ = _load(chat_dir("qwen2_5_vl"))
    assert torch.isfinite(model(**cut).loss)


def test_default_lora_wraps_language_model_attention_and_mlp_only(chat_dir) -> None:
    model, _, family = _load(chat_dir("qwen2_5_vl"))
    peft_model = apply_lora(model, family, None, r=4, alpha=8, dropout=0.0)
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_modules() if n.endswith(".lora_A")}
    assert all(".language_model." in name for name in wrapped)
    leaves = {name.rsplit(".", 1)[-1] for name in wrapped}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("visual" in n for n, p in peft_model.named_parameters() if p.requires_grad)


def test_image_pixel_limits_reach_the_processor(chat_dir) -> None:
    _, small, family = _load(chat_dir("qwen2_5_vl"), max_image_pixels=28 * 28, min_image_pixels=28 * 28)
    _, large, _ = _load(chat_dir("qwen2_5_vl"), max_image_pixels=112 * 112)
    images = [make_images()[2]]
    tokens_small = family.build_inputs(small, images, None)["input_ids"].shape[1]
    tokens_large = family.build_inputs(large, images, None)["input_ids"].shape[1]
    assert tokens_small < tokens_large


def test_batched_generation_matches_per_image_with_left_padding(chat_dir) -> None:
    model, processor, family = _load(chat_dir("qwen2_5_vl"))
    inputs = family.build_inputs(processor, make_images(), PROMPTS)
    assert (inputs["attention_mask"][:, -1] == 1).all(), "generation inputs are left-padded"
    settings = {"max_new_tokens": 4, "do_sample": False}
    batched = family.generate(model, processor, inputs, settings)
    singles = [
        family.generate(model, processor, family.build_inputs(processor, [i], [p]), settings)[0]
        for i, p in zip(make_images(), PROMPTS, strict=True)
    ]
    assert batched == singles


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "llava"])
def test_lora_layers_by_part_never_cross_into_the_vision_tower(model_type: str, chat_dir) -> None:
    from altcap.models.chat_lora import find_lora_layers

    model, _, _ = _load(chat_dir(model_type))
    language = find_lora_layers(model)
    projector = find_lora_layers(model, ("projector",))
    vision = find_lora_layers(model, ("vision",))
    assert language and projector and vision
    assert all(".language_model." in name for name in language)
    assert not set(language) & set(vision) and not set(projector) & set(vision)
    every_part = find_lora_layers(model, ("language", "projector", "vision"))
    assert set(every_part) == {*language, *projector, *vision}


def test_captioning_with_a_static_kv_cache_gives_the_same_greedy_ids(chat_dir, monkeypatch) -> None:
    """The seam the GPU decoding work builds on: `cache_implementation="static"` through the family's
    own generate gives exactly the default cache's greedy tokens (left-padded batch of 3)."""
    from transformers.cache_utils import StaticCache

    model, processor, family = _load(chat_dir("qwen2_5_vl"))
    inputs = family.build_inputs(processor, make_images(), PROMPTS)
    static_caches = []
    real_init = StaticCache.__init__

    def counting_init(self, *args, **kwargs):
        static_caches.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(StaticCache, "__init__", counting_init)
    decoded: dict[str, list[list[int]]] = {}
    real_batch_decode = processor.tokenizer.batch_decode
    settings = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "num_beams": 1}
    captions = {}
    for name, extra in (("dynamic", {}), ("static", {"cache_implementation": "static"})):

        def recording_batch_decode(sequences, _name=name, **kwargs):
            decoded[_name] = sequences.tolist()
            return real_batch_decode(sequences, **kwargs)

        monkeypatch.setattr(processor.tokenizer, "batch_decode", recording_batch_decode)
        captions[name] = family.generate(model, processor, inputs, {**settings, **extra})
        assert bool(static_caches) is (name == "static")
    assert len(decoded["static"]) == 3 and all(len(row) == 8 for row in decoded["static"])
    assert decoded["static"] == decoded["dynamic"]
    assert captions["static"] == captions["dynamic"]
