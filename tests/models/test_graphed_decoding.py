"""Decode steps replayed from fixed tensors give transformers' own ids and scores, bit for bit.

On the CPU the "graph" re-runs the step on the fixed tensors (everything but the capture itself is
exercised: cache buffers, input copies, per-step keys, reuse across batches); the CUDA test
captures real graphs and runs wherever a GPU is present (the GPU machine in benchmarks).
"""

from __future__ import annotations

from unittest import mock

import _family_checks as checks
import pytest
import torch

from altcap.models.graphed_decoding import GraphedDecoder, PreallocatedLayer
from altcap.models.query_tokens import generate_sequences

SETTINGS = {
    "greedy": {"num_beams": 1, "max_new_tokens": 7, "min_new_tokens": 7},
    "beams": {"num_beams": 3, "num_return_sequences": 3, "max_new_tokens": 7, "min_new_tokens": 7},
    "beams, early stop": {"num_beams": 3, "max_new_tokens": 7, "no_repeat_ngram_size": 2},
    "greedy, early stop": {"num_beams": 1, "max_new_tokens": 7, "no_repeat_ngram_size": 2},
}


def _batches(model, processor, family, device: str) -> list[dict]:
    """Two batches of six images with the same shapes and different pixels."""
    images = checks.make_images() * 2
    first = family.build_inputs(processor, images, None)
    second = family.build_inputs(processor, images[::-1], None)
    return [{k: v.to(device) for k, v in batch.items() if k != "labels"} for batch in (first, second)]


def _generate(model, inputs: dict, settings: dict, decoder: GraphedDecoder | None = None):
    # Suppressing the pad token keeps a random tiny model from emitting only pads.
    kwargs = {**settings, "suppress_tokens": [0], "output_scores": True, "return_dict_in_generate": True}
    if decoder is None:
        return model.generate(**inputs, **kwargs)
    with decoder.active(settings["max_new_tokens"]) as cache_kwargs:
        return model.generate(**inputs, **kwargs, **cache_kwargs)


def _assert_same(expected, got) -> None:
    assert torch.equal(expected.sequences, got.sequences)
    assert len(expected.scores) == len(got.scores)
    assert all(torch.equal(a, b) for a, b in zip(expected.scores, got.scores, strict=True))


def _check_against_plain_generate(
    model, batches: list[dict], settings: dict, decoder: GraphedDecoder
) -> None:
    for inputs in batches:
        if "min_new_tokens" not in settings:
            settings = _stopping_early(model, inputs, settings)
        _assert_same(_generate(model, inputs, settings), _generate(model, inputs, settings, decoder))


def _stopping_early(model, inputs: dict, settings: dict) -> dict:
    """`settings` with end-of-text tokens chosen so every row ends after 3 tokens (a random model
    rarely emits its real EOS): the loop must stop early, as a trained model's does."""
    third = _generate(model, inputs, settings).sequences[:, 3]
    return {**settings, "eos_token_id": sorted(set(third.tolist()))}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETTINGS))
def test_replayed_steps_equal_plain_generate(tiny_model_dir, name: str) -> None:
    model, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    decoder = GraphedDecoder(model.language_model, use_cuda_graphs=False)
    batches = _batches(model, processor, family, "cpu")
    _check_against_plain_generate(model, batches, SETTINGS[name], decoder)
    # Every decode step after the first was captured once and replayed for the second batch.
    assert decoder.captured == len(decoder.graphs) <= SETTINGS[name]["max_new_tokens"] - 1
    assert decoder.captured > 0
    assert "forward" not in vars(model.language_model)  # the LM's own forward is back


def test_steps_captured_under_transformers_capture_branches_equal_plain_generate(tiny_model_dir) -> None:
    """Under stream capture transformers builds attention masks it skips in eager mode; the
    result must not change."""
    import transformers.utils.import_utils as import_utils

    model, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    decoder = GraphedDecoder(model.language_model, use_cuda_graphs=False)
    capture = decoder._capture

    def capture_as_if_capturing(*args, **kwargs):
        step = capture(*args, **kwargs)
        run = step.run

        def run_capturing() -> None:
            with mock.patch.object(import_utils, "is_cuda_stream_capturing", lambda: True):
                run()

        step.run = run_capturing
        return step

    decoder._capture = capture_as_if_capturing
    _check_against_plain_generate(
        model, _batches(model, processor, family, "cpu"), SETTINGS["beams"], decoder
    )


@pytest.mark.slow
def test_a_new_batch_size_reallocates_and_recaptures(tiny_model_dir) -> None:
    model, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    decoder = GraphedDecoder(model.language_model, use_cuda_graphs=False)
    full, _ = _batches(model, processor, family, "cpu")
    short = {k: v[:4] for k, v in full.items()}
    settings = SETTINGS["greedy"]
    for inputs in (full, short, full):
        _assert_same(_generate(model, inputs, settings), _generate(model, inputs, settings, decoder))
    # 6 decode steps per batch shape; graphs of a superseded buffer are dropped, never replayed.
    assert decoder.captured == 18 and len(decoder.graphs) == 6


def test_preallocated_layer_views_and_in_place_reorder() -> None:
    layer = PreallocatedLayer(capacity=4)
    first = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    keys, _ = layer.update(first, first + 100)
    buffer = layer.key_buffer
    assert keys.shape == (2, 1, 2, 3) and layer.get_seq_length() == 2
    layer.reorder_cache(torch.tensor([1, 1]))
    spare = layer.key_buffer
    assert spare is not buffer and layer.keys.data_ptr() == spare.data_ptr()
    assert torch.equal(layer.keys[0], first[1]) and torch.equal(layer.values[0], first[1] + 100)
    layer.reorder_cache(torch.tensor([1, 0]))  # back into the first pair: two fixed addresses only
    assert layer.key_buffer is buffer and torch.equal(layer.keys[1], first[1])
    layer.update(first[:, :, :1], first[:, :, :1])
    assert layer.get_seq_length() == 3
    with pytest.raises(ValueError, match="holds 4 positions"):
        layer.update(first, first)
    layer.reset()
    assert layer.get_seq_length() == 0


def test_family_generate_refuses_cpu_and_decoder_only_lms(tiny_model_dir) -> None:
    model, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    inputs = _batches(model, processor, family, "cpu")[0]
    with pytest.raises(ValueError, match="CUDA device"):
        generate_sequences(model, processor, inputs, {"max_new_tokens": 3, "cuda_graphs": True})
    model, processor, family = checks.load(tiny_model_dir("blip2", "opt"))
    inputs = _batches(model, processor, family, "cpu")[0]
    with pytest.raises(ValueError, match="decoder-only"):
        generate_sequences(model, processor, inputs, {"max_new_tokens": 3, "cuda_graphs": True})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="captures CUDA graphs: run on the GPU machine")
@pytest.mark.parametrize("name", list(SETTINGS))
def test_cuda_graphs_equal_plain_generate_on_gpu(tiny_model_dir, name: str) -> None:
    model, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    model = model.to("cuda", torch.bfloat16)
    batches = _batches(model, processor, family, "cuda")
    batches = [
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in b.items()} for b in batches
    ]
    decoder = GraphedDecoder(model.language_model)
    with torch.inference_mode():
        _check_against_plain_generate(model, batches, SETTINGS[name], decoder)
    assert decoder.graphs and all(step.graph is not None for step in decoder.graphs.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="captures CUDA graphs: run on the GPU machine")
def test_cuda_graphs_recaptured_for_a_new_batch_size_on_gpu(tiny_model_dir) -> None:
    model, processor, family = checks.load(tiny_model_dir("blip2", "t5"))
    model = model.to("cuda", torch.bfloat16)
    full, _ = _batches(model, processor, family, "cuda")
    full = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in full.items()}
    short = {k: v[:4] for k, v in full.items()}
    decoder = GraphedDecoder(model.language_model)
    with torch.inference_mode():
        _check_against_plain_generate(model, [full, short, full], SETTINGS["beams"], decoder)
    assert decoder.captured == 18 and len(decoder.graphs) == 6
