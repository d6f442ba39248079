"""altcap-mini's decoding: the prompt's cache built once per image, the few-row LM head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from altcap.models import mini_decoding as decoding
from altcap.models.families import altcap_mini as mini
from altcap.models.mini_tokens import stop_token_ids


@pytest.fixture(scope="module")
def tiny(tiny_altcap_mini_dir: Path) -> tuple[mini.AltcapMini, mini.AltcapMiniProcessor]:
    return mini.load(str(tiny_altcap_mini_dir))


def build_prompts(model: mini.AltcapMini, processor: mini.AltcapMiniProcessor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of two left-padded prompts of different lengths, and their attention mask."""
    images = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (32, 32), (20, 180, 40))]
    inputs = mini.build_inputs(processor, images, ["Describe it.", "Say in a few more words what is here."])
    assert int((inputs["attention_mask"] == 0).sum()) > 0  # one row really is padded
    with torch.no_grad():
        embeds = model.embed_inputs(inputs["input_ids"], model.encode_pixels(inputs["pixel_values"]))
    return embeds, inputs["attention_mask"]


@pytest.mark.parametrize("rows", [1, 3, 8, 9, 20])
def test_few_row_linear_equals_the_layer(rows: int) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(24, 50)
    hidden = torch.randn(rows, 1, 24)
    expected = layer(hidden)
    got = decoding.few_row_linear(layer, hidden)
    assert got.shape == expected.shape == (rows, 1, 50)
    torch.testing.assert_close(got, expected)
    if rows > decoding.FEW_HEAD_ROWS:  # many rows: the layer's own kernel, bit for bit
        assert torch.equal(got, expected)


def test_few_row_lm_head_is_patched_only_while_generating(tiny) -> None:
    model, _ = tiny
    head = model.language_model.get_output_embeddings()
    hidden = torch.randn(3, 1, head.in_features)
    with decoding.few_row_lm_head(model.language_model):
        assert "forward" in vars(head)
        torch.testing.assert_close(head(hidden), nn.functional.linear(hidden, head.weight))
    assert "forward" not in vars(head)  # the class's forward again, also after an error inside
    with pytest.raises(RuntimeError), decoding.few_row_lm_head(model.language_model):
        raise RuntimeError("generate failed")
    assert "forward" not in vars(head)


def test_shared_prompt_cache_equals_the_per_beam_one(tiny) -> None:
    model, processor = tiny
    embeds, mask = build_prompts(model, processor)
    lm = model.language_model
    shared = decoding.prefill_prompt_cache(lm, embeds, mask, beams=3)
    expanded = mask.repeat_interleave(3, dim=0)
    positions = (expanded.long().cumsum(-1) - 1).masked_fill(expanded == 0, 0)
    with torch.no_grad():
        output = lm.get_decoder()(inputs_embeds=embeds.repeat_interleave(3, dim=0), attention_mask=expanded,
                                  position_ids=positions, use_cache=True)
    per_beam = getattr(output, "cache", None) or output.past_key_values
    for ours, theirs in zip(shared.layers, per_beam.layers, strict=True):
        assert ours.keys.shape[0] == 6
        torch.testing.assert_close(ours.keys, theirs.keys)
        torch.testing.assert_close(ours.values, theirs.values)


@pytest.mark.parametrize("settings", [
    {"num_beams": 3, "max_new_tokens": 8, "min_new_tokens": 2, "no_repeat_ngram_size": 3},
    {"num_beams": 2, "max_new_tokens": 6, "length_penalty": 1.5},
])
def test_beam_search_with_the_shared_prompt_writes_what_generate_writes(tiny, settings) -> None:
    model, processor = tiny
    embeds, mask = build_prompts(model, processor)
    tokenizer = processor.tokenizer
    assert decoding.shares_prompt_prefill(settings)
    with torch.no_grad():
        ours = decoding.generate_ids(model.language_model, embeds, mask, settings, tokenizer)
        plain = model.language_model.generate(inputs_embeds=embeds, attention_mask=mask,
                                              pad_token_id=tokenizer.pad_token_id,
                                              eos_token_id=stop_token_ids(tokenizer), **settings)
    assert ours.tolist() == plain.tolist()


@pytest.mark.parametrize(("settings", "shared"), [
    ({"num_beams": 3}, True),
    ({"num_beams": 1}, False),
    ({}, False),
    ({"num_beams": 3, "do_sample": True}, False),
    ({"num_beams": 3, "cache_implementation": "static"}, False),
    ({"num_beams": 3, "use_cache": False}, False),
])
def test_only_deterministic_beam_search_on_the_dynamic_cache_shares_the_prompt(settings, shared) -> None:
    assert decoding.shares_prompt_prefill(settings) is shared


def test_few_rows_generate_on_one_thread_and_the_count_comes_back() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu = torch.zeros(1)
        with decoding.few_row_threads(cpu, decoding.FEW_THREAD_ROWS):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with decoding.few_row_threads(cpu, decoding.FEW_THREAD_ROWS + 1):
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), decoding.few_row_threads(cpu, 3):
            raise RuntimeError("generate failed")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
