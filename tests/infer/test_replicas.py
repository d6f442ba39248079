"""`altcap caption --replicas N`: model copies in their own processes write what one process writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_caption import TEST_IMAGES, make_config

from altcap.infer.caption import CaptionItem, provenance_path, run_caption
from altcap.infer.captions_file import read_captions
from altcap.infer.replicas import caption_with_replicas, shard_batches


def test_shards_keep_whole_batches_in_turn() -> None:
    items = list(range(7))
    assert shard_batches(items, 2, 2) == [[0, 1, 4, 5], [2, 3, 6]]
    assert shard_batches(items, 2, 5) == [[0, 1], [2, 3], [4, 5], [6], []]


def test_two_replicas_write_the_single_process_captions(tiny_blip2, manifest, tmp_path) -> None:
    reference = tmp_path / "one.jsonl"
    run_caption(make_config(tiny_blip2, manifest, reference, num_workers=0))
    out = tmp_path / "two.jsonl"
    summary = run_caption(make_config(tiny_blip2, manifest, out, num_workers=0, replicas=2))
    expected = {r.image: r.caption for r in read_captions(reference)}
    records = read_captions(out)
    assert len(records) == 5 and {r.image: r.caption for r in records} == expected
    assert {r.image for r in records} == TEST_IMAGES and summary.written_images == 5
    assert all(r.generation == read_captions(reference)[0].generation for r in records)
    assert json.loads(provenance_path(out).read_text())["runs"][-1]["status"] == "done"
    # A rerun finds everything done, as with one process.
    assert run_caption(make_config(tiny_blip2, manifest, out, num_workers=0, replicas=2)).written_images == 0


def test_a_failing_replica_is_reported(tiny_blip2, manifest, tmp_path) -> None:
    cfg = make_config(tiny_blip2, manifest, tmp_path / "x.jsonl", num_workers=0, replicas=2)
    gone = cfg.model.model_copy(update={"model_id": str(tmp_path / "gone")})
    broken = cfg.model_copy(update={"model": gone})
    items = [CaptionItem("k", Path("k.jpg"))]
    with pytest.raises(RuntimeError, match="a caption replica failed"):
        caption_with_replicas(broken, items, lambda keys, captions: None, poll_seconds=0.5)
