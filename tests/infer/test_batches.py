"""`altcap caption`'s batches: formed, padded, and prepared in chunks by worker processes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_caption import make_config

import altcap.infer.batches as batches_module
from altcap.infer.batches import CaptionItem
from altcap.infer.caption import run_caption
from altcap.infer.captions_file import read_captions
from altcap.infer.items import collect_items
from altcap.models.loading import ModelConfig, load_model


def test_pad_batches_fills_short_batches_with_their_last_item() -> None:
    items = [CaptionItem(f"k{i}", Path(f"k{i}.jpg")) for i in range(5)]
    batches = list(batches_module.iter_batches(items, 2))
    padded = batches_module.pad_batches(batches, 2)
    assert [len(b) for b in padded] == [2, 2, 2] and padded[-1] == [items[4], items[4]]
    assert padded[:2] == batches[:2]


def test_split_evenly_keeps_order_and_chunk_sizes() -> None:
    items = [CaptionItem(f"k{i}", Path(f"k{i}.jpg")) for i in range(21)]
    chunks = batches_module.split_evenly(items, 4, min_size=5)
    assert [len(c) for c in chunks] == [6, 5, 5, 5] and [i for c in chunks for i in c] == items
    assert batches_module.split_evenly(items[:7], 4, min_size=5) == [items[:7]]


def test_worker_chunks_join_into_the_whole_batch(tiny_blip2, manifest) -> None:
    _, processor, family = load_model(ModelConfig(model_id=str(tiny_blip2), device="cpu"))
    cfg = make_config(tiny_blip2, manifest, manifest.parent / "unused.jsonl", split=None)
    items = [item for item in collect_items(cfg) if item.prompt is None]
    whole = batches_module._prepare_batch(family, processor, items, None)
    chunks = batches_module.split_evenly(items, 3, min_size=2)
    assert len(chunks) == 3
    parts = [batches_module._prepare_batch(family, processor, chunk, None) for chunk in chunks]
    assert batches_module.joinable(parts)
    joined = batches_module.concat_inputs(parts)
    assert joined.keys() == whole.keys()
    assert all(torch.equal(joined[key], whole[key]) for key in whole)
    # Chunks of different prompt lengths cannot be stacked: the caller prepares the batch whole.
    other = batches_module._prepare_batch(family, processor, chunks[0], "A much longer instruction here.")
    assert not batches_module.joinable([parts[0], other])


@pytest.mark.slow
def test_batches_split_across_workers_give_the_same_captions(
    tiny_blip2, manifest, tmp_path, monkeypatch
) -> None:
    reference = tmp_path / "thread.jsonl"
    run_caption(make_config(tiny_blip2, manifest, reference, num_workers=0, batch_size=4))
    split = batches_module.split_evenly
    chunk_sizes = []

    def small_chunks(batch, parts, min_size=8):
        chunks = split(batch, parts, min_size=1)
        chunk_sizes.append([len(chunk) for chunk in chunks])
        return chunks

    monkeypatch.setattr(batches_module, "split_evenly", small_chunks)
    out = tmp_path / "chunks.jsonl"
    run_caption(make_config(tiny_blip2, manifest, out, num_workers=2, batch_size=4))
    assert any(len(sizes) == 2 for sizes in chunk_sizes)  # some batch really was prepared in two halves
    assert [(r.image, r.caption) for r in read_captions(out)] == [
        (r.image, r.caption) for r in read_captions(reference)
    ]


def test_batches_shaped_by_image_size_are_not_split(tiny_blip2, manifest) -> None:
    """LLaVA-NeXT-like inputs (tiles per image size) would pad differently per chunk: one part each."""
    _, processor, family = load_model(ModelConfig(model_id=str(tiny_blip2), device="cpu"))
    cfg = make_config(tiny_blip2, manifest, manifest.parent / "unused.jsonl", split=None)
    items = [item for item in collect_items(cfg) if item.prompt is None] * 4
    for shaped, parts in ((False, 2), (True, 1)):
        chosen = replace(family, inputs_shaped_by_image_size=shaped)
        prepared = batches_module.iter_prepared_batches(chosen, processor, [items], None, num_workers=2)
        ((batch, chunks),) = list(prepared)
        assert batch == items and len(chunks) == parts
        assert sum(len(chunk["input_ids"]) for chunk in chunks) == len(items)


def test_a_single_chunk_is_prepared_without_starting_a_worker(tiny_blip2, manifest, monkeypatch) -> None:
    """#27 item 17: captioning one image must not wait for a worker process to start."""
    import torch.utils.data

    _, processor, family = load_model(ModelConfig(model_id=str(tiny_blip2), device="cpu"))
    cfg = make_config(tiny_blip2, manifest, manifest.parent / "unused.jsonl", split=None)
    items = [item for item in collect_items(cfg) if item.prompt is None][:1]

    def no_loader(*args, **kwargs):
        raise AssertionError("a DataLoader was started for one chunk")

    monkeypatch.setattr(torch.utils.data, "DataLoader", no_loader)
    prepared = batches_module.iter_prepared_batches(family, processor, [items], None, num_workers=2)
    ((batch, parts),) = list(prepared)
    whole = batches_module._prepare_batch(family, processor, items, None)
    assert batch == items and len(parts) == 1
    assert all(torch.equal(parts[0][key], whole[key]) for key in whole)


def test_workers_cast_pixels_to_the_model_dtype(tiny_blip2, manifest) -> None:
    """Pixels arrive in the model's dtype, equal to the processor's float32 ones cast, ids untouched."""
    import torch

    _, processor, family = load_model(ModelConfig(model_id=str(tiny_blip2), device="cpu"))
    cfg = make_config(tiny_blip2, manifest, manifest.parent / "unused.jsonl", split=None)
    items = [item for item in collect_items(cfg) if item.prompt is None] * 4
    prepared = batches_module.iter_prepared_batches(
        family, processor, [items], None, num_workers=2, float_dtype=torch.bfloat16
    )
    ((_, parts),) = list(prepared)
    whole = batches_module._prepare_batch(family, processor, items, None)
    joined = batches_module.concat_inputs(parts)
    assert whole["pixel_values"].dtype == torch.float32 and joined["pixel_values"].dtype == torch.bfloat16
    assert torch.equal(joined["pixel_values"], whole["pixel_values"].bfloat16())
    assert torch.equal(joined["input_ids"], whole["input_ids"])


def _with_context(manifest: Path, image: str, context: str) -> None:
    import json

    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if row["image"] == image:
            row["metadata"] = {"context": context}
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.mark.slow
def test_caption_puts_context_into_instruction_prompts(tiny_blip2, manifest, tmp_path, monkeypatch) -> None:
    from altcap.models.registry import DEFAULT_INSTRUCTION
    from altcap.models.tiny_chat import build_tiny_chat_model

    _with_context(manifest, "imgs/im0.jpg", "a news article about a flood")
    seen: list[tuple[list[str | None], str]] = []
    prepare = batches_module._prepare_batch

    def spy(family, processor, batch, default_prompt, float_dtype=None):
        inputs = prepare(family, processor, batch, default_prompt, float_dtype)
        texts = processor.tokenizer.batch_decode(inputs["input_ids"]) if family.uses_chat_template else [""]
        seen.append(([item.prompt for item in batch], " ".join(texts)))
        return inputs

    monkeypatch.setattr(batches_module, "_prepare_batch", spy)
    qwen = build_tiny_chat_model("qwen2_5_vl", tmp_path / "qwen")
    run_caption(make_config(qwen, manifest, tmp_path / "q.jsonl", num_workers=0, batch_size=8))
    by_prompt = {prompt: text for prompts, text in seen for prompt in prompts}
    expected = f"This image appears in: a news article about a flood\n{DEFAULT_INSTRUCTION}"
    assert expected in by_prompt and expected in by_prompt[expected]  # in the decoded prompt tokens
    assert None in by_prompt and "flood" not in by_prompt[None]  # the others are unchanged
    seen.clear()
    run_caption(make_config(tiny_blip2, manifest, tmp_path / "b.jsonl", num_workers=0, batch_size=8))
    # BLIP-2 follows instructions without a chat template: it reads the context too
    assert expected in [p for prompts, _ in seen for p in prompts]
