"""A chat VLM's decode steps replayed from fixed tensors give `generate`'s own ids.

On the CPU the "graph" re-runs the step on the fixed tensors (the static cache, the input copies,
one graph per batch shape and its reuse are all exercised); the CUDA test captures real graphs and
runs wherever a GPU is present (the GPU machine). Every chat family's ids: the contract test
`test_contract_graphed_chat_decoding_gives_the_same_ids`.
"""

from __future__ import annotations

from types import SimpleNamespace

import _family_checks as checks
import pytest
import torch

from altcap.models.graphed_chat_decoding import (
    cache_capacity,
    generate_with_chat_graphs,
    static_steps_problem,
)
from altcap.models.loading import ModelConfig, load_model

GREEDY = {"num_beams": 1, "max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}


def _inputs(family, processor, images, device: str = "cpu") -> dict:
    batch = family.build_inputs(processor, images, None)
    return {key: value.to(device) for key, value in batch.items() if key != "labels"}


def test_cache_capacity_holds_prompt_new_tokens_and_the_deferred_step_in_steps_of_64():
    assert cache_capacity(274, 30) == 320
    assert cache_capacity(289, 30) == 320
    assert cache_capacity(290, 30) == 384


def _config(layer_types, sliding_window=None):
    text = SimpleNamespace(layer_types=layer_types, sliding_window=sliding_window)
    return SimpleNamespace(get_text_config=lambda decoder=True: text)


def test_layers_with_host_side_state_decode_without_graphs():
    assert static_steps_problem(_config(None), 320) is None
    assert static_steps_problem(_config(["sliding_attention", "full_attention"], 1024), 320) is None
    assert "sliding window" in static_steps_problem(_config(["sliding_attention"], 256), 320)
    assert "linear_attention" in static_steps_problem(_config(["linear_attention", "full_attention"]), 320)


def test_one_graph_serves_every_step_and_batch_of_a_shape(chat_dir):
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir("qwen2_5_vl")), device="cpu"))
    images = checks.make_images()
    first, second = _inputs(family, processor, images), _inputs(family, processor, images[::-1])
    with torch.no_grad():
        for batch in (first, second):
            expected = model.generate(**batch, **GREEDY)
            assert torch.equal(
                generate_with_chat_graphs(model, batch, GREEDY, use_cuda_graphs=False), expected
            )
        decoder = model._altcap_graphed_chat_decoder
        assert decoder.captured == 1 and len(decoder.caches) == 1  # same shape: same cache, same graph
        one = _inputs(family, processor, images[:1])
        expected = model.generate(**one, **GREEDY)
        assert torch.equal(generate_with_chat_graphs(model, one, GREEDY, use_cuda_graphs=False), expected)
    assert decoder.captured == 2 and len(decoder.caches) == 2  # another batch size: its own


def test_sampling_several_answers_a_row_draws_generates_own_ids(chat_dir):
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir("smolvlm")), device="cpu"))
    batch = _inputs(family, processor, checks.make_images()[:2])
    sampling = {**GREEDY, "do_sample": True, "top_k": 0, "temperature": 1.5, "num_return_sequences": 2}
    with torch.no_grad():
        torch.manual_seed(3)
        expected = model.generate(**batch, **sampling)
        torch.manual_seed(3)
        graphed = generate_with_chat_graphs(model, batch, sampling, use_cuda_graphs=False)
    assert graphed.shape[0] == 4 and torch.equal(graphed, expected)
    assert model._altcap_graphed_chat_decoder.captured == 1


def test_beam_search_runs_without_graphs(chat_dir):
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir("smolvlm")), device="cpu"))
    batch = _inputs(family, processor, checks.make_images()[:2])
    beams = {**GREEDY, "num_beams": 2}
    with torch.no_grad():
        expected = model.generate(**batch, **beams)
        assert torch.equal(generate_with_chat_graphs(model, batch, beams, use_cuda_graphs=False), expected)
    assert getattr(model, "_altcap_graphed_chat_decoder", None) is None


def test_caption_generation_setting_reaches_the_graphs_and_needs_cuda(chat_dir):
    model, processor, family = load_model(ModelConfig(model_id=str(chat_dir("qwen2_5_vl")), device="cpu"))
    inputs = family.build_inputs(processor, checks.make_images()[:1], None)
    assert family.graphed_decoding is not None
    with pytest.raises(ValueError, match="needs the model on a CUDA device"):
        family.generate(model, processor, inputs, {**GREEDY, "cuda_graphs": True})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="captures CUDA graphs: run on the GPU machine")
@pytest.mark.parametrize("case", ["qwen2_5_vl", "smolvlm", "gemma3"])
def test_cuda_graphs_give_the_static_cache_ids_on_gpu(chat_dir, case: str) -> None:
    model, processor, family = load_model(
        ModelConfig(model_id=str(chat_dir(case)), device="cuda", dtype="bfloat16")
    )
    images = checks.make_images()
    with torch.no_grad():
        for batch in (
            _inputs(family, processor, images, "cuda"),
            _inputs(family, processor, images[::-1], "cuda"),
        ):
            eager = generate_with_chat_graphs(model, batch, GREEDY, use_cuda_graphs=False)
            model.__dict__.pop("_altcap_graphed_chat_decoder")
            graphed = generate_with_chat_graphs(model, batch, GREEDY)
            assert torch.equal(graphed, eager)  # the same kernels, replayed
