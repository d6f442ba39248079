"""Encoding the next batch while this one decodes: order, real overlap, errors, same captions."""

from __future__ import annotations

import functools
import threading
from dataclasses import replace

import pytest
import torch
from test_caption import make_config

import altcap.infer.encode_ahead as encode_ahead
from altcap.infer.caption import caption_items, collect_items, order_for_throughput
from altcap.infer.captions_file import read_captions
from altcap.models.loading import load_model

CPU = torch.device("cpu")


def _prepared(count: int):
    return iter([(f"batch{i}", [{"x": torch.full((2,), float(i))}]) for i in range(count)])


def test_batches_come_in_order_with_the_next_one_encoded_first() -> None:
    events: list[str] = []

    def encode(parts):
        events.append(f"encode {int(parts[0]['x'][0])}")
        return {"x": parts[0]["x"] * 10}

    handed = []
    for done in encode_ahead.iter_encoded_batches(encode, _prepared(3), CPU, threaded=False):
        events.append(f"decode {done.batch}")
        handed.append((done.batch, done.encoded["x"][0].item()))
    assert handed == [("batch0", 0.0), ("batch1", 10.0), ("batch2", 20.0)]
    assert events == [
        "encode 0", "encode 1", "decode batch0", "encode 2", "decode batch1", "decode batch2"
    ]


def test_the_next_batch_is_encoded_while_this_one_decodes() -> None:
    """Batch 1's encoding waits for a signal that batch 0's decoding sends, then waits for the
    encoding to finish: one thread running both would never get past batch 0."""
    decoding_started = threading.Event()
    encoded_during_decoding = threading.Event()

    def encode(parts):
        if int(parts[0]["x"][0]) == 1:
            assert decoding_started.wait(timeout=10), "batch 1 was not encoded during batch 0's decoding"
            encoded_during_decoding.set()
        return parts[0]

    batches = encode_ahead.iter_encoded_batches(encode, _prepared(3), CPU, threaded=True)
    for done in batches:
        if done.batch == "batch0":
            decoding_started.set()
            assert encoded_during_decoding.wait(timeout=10)
    assert encoded_during_decoding.is_set()


def test_an_encoding_error_reaches_the_caller_after_every_batch_before_it() -> None:
    def encode(parts):
        if int(parts[0]["x"][0]) == 2:
            raise ValueError("image 2 is broken")
        return parts[0]

    seen = []
    with pytest.raises(ValueError, match="image 2 is broken"):
        for done in encode_ahead.iter_encoded_batches(encode, _prepared(4), CPU, threaded=True):
            seen.append(done.batch)
    assert seen == ["batch0", "batch1"]  # every batch before the broken one was handed over


@pytest.mark.parametrize("lm", ["opt", "t5"])
def test_captions_encoded_ahead_in_a_thread_equal_plain_generate(
    request, manifest, tmp_path, monkeypatch, lm
) -> None:
    """The whole `caption_items` path, the encoding thread forced on (a CPU defaults to one thread),
    against the family's plain `generate` on the same batches."""
    folder = request.getfixturevalue("tiny_blip2" if lm == "opt" else "tiny_blip2_t5")
    plain_out, ahead_out = tmp_path / "plain.jsonl", tmp_path / "ahead.jsonl"
    cfg = make_config(folder, manifest, plain_out, batch_size=2)
    model, processor, family = load_model(cfg.model)
    assert family.encode_for_generation is not None
    items = order_for_throughput(collect_items(cfg))
    caption_items(model, processor, replace(family, encode_for_generation=None), items, cfg, progress=False)
    threads = []
    threaded = functools.partial(encode_ahead.iter_encoded_batches, threaded=True)

    def spy(*args, **kwargs):
        threads.append(threading.current_thread())
        return threaded(*args, **kwargs)

    monkeypatch.setattr(encode_ahead, "iter_encoded_batches", spy)
    ahead_cfg = cfg.model_copy(update={"out": ahead_out})
    written = caption_items(model, processor, family, items, ahead_cfg, progress=False)
    assert threads and written == len(items) == 5
    expected = [(r.image, r.caption) for r in read_captions(plain_out)]
    assert [(r.image, r.caption) for r in read_captions(ahead_out)] == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="two CUDA streams: run on the GPU machine")
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_encoding_on_a_side_stream_gives_plain_generates_captions_on_gpu(
    tiny_blip2_t5, manifest, tmp_path, cuda_graphs
) -> None:
    from altcap.infer.config import GenerationConfig

    generation = GenerationConfig(num_beams=1, max_new_tokens=5, min_new_tokens=5, cuda_graphs=cuda_graphs)
    cfg = make_config(tiny_blip2_t5, manifest, tmp_path / "ahead.jsonl", generation=generation)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"device": "cuda"})})
    model, processor, family = load_model(cfg.model)
    items = order_for_throughput(collect_items(cfg))
    caption_items(model, processor, family, items, cfg, progress=False)
    plain = replace(family, encode_for_generation=None)
    plain_cfg = cfg.model_copy(update={"out": tmp_path / "plain.jsonl"})
    caption_items(model, processor, plain, items, plain_cfg, progress=False)
    expected = [(r.image, r.caption) for r in read_captions(plain_cfg.out)]
    assert [(r.image, r.caption) for r in read_captions(cfg.out)] == expected
