"""`altcap caption --gpus N`: 2 CPU processes (gloo) write the same captions as 1, merged in manifest
order, and a killed run resumes without captioning its finished images again.

Every multi-process run is a fresh `altcap caption` under `accelerate launch` (what `--gpus 2` starts),
so accelerate's process-wide state never leaks between runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from altcap.infer.captions_file import read_captions
from altcap.infer.distributed import find_shards, merge_shards, shard_path

TEST_IMAGES = [f"imgs/im{i}.jpg" for i in range(5)]  # the manifest fixture's test split, in order
CAPTION_ARGS = ["--split", "test", "--num-beams", "2", "--max-new-tokens", "5", "--batch-size", "2",
                "--device", "cpu", "--set", "generation.min_new_tokens=5"]


def caption(model: Path, manifest: Path, out: Path, gpus: int) -> subprocess.CompletedProcess:
    """`altcap caption ... --gpus N` as a user runs it; fails the test on a non-zero exit."""
    # One thread each: 2 processes on the 2-core box would otherwise oversubscribe it.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["--model-id", str(model), "--manifest", str(manifest), "--out", str(out), "--gpus", str(gpus)]
    result = subprocess.run([sys.executable, "-m", "altcap.cli", "caption", *args, *CAPTION_ARGS],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_processes_write_one_process_captions_in_manifest_order(tiny_blip2, manifest, tmp_path) -> None:
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    caption(tiny_blip2, manifest, one, gpus=1)
    result = caption(tiny_blip2, manifest, two, gpus=2)
    assert "launching 2 processes" in result.stderr
    expected = {r.image: r.caption for r in read_captions(one)}
    records = read_captions(two)
    assert [r.image for r in records] == TEST_IMAGES
    assert {r.image: r.caption for r in records} == expected
    assert find_shards(two) == []
    runs = json.loads((tmp_path / "two.jsonl.provenance.json").read_text(encoding="utf-8"))["runs"]
    assert runs[-1]["status"] == "done" and runs[-1]["written_images"] == 5


@pytest.mark.slow
def test_a_killed_run_resumes_without_recaptioning(tiny_blip2, manifest, tmp_path) -> None:
    out = tmp_path / "captions.jsonl"
    caption(tiny_blip2, manifest, out, gpus=1)
    reference = read_captions(out)
    # What a run of 3 processes killed mid-way leaves: one image already in `out`, two finished
    # in the shards (one shard ending in a torn write), the rest not started. The finished ones
    # get a marker caption, so re-captioning them would show.
    done = [r.model_copy(update={"caption": f"FINISHED {r.image}"}) for r in reference]
    out.write_text(json.dumps(done[4].model_dump()) + "\n", encoding="utf-8")
    shard_path(out, 0).write_text(json.dumps(done[1].model_dump()) + "\n", encoding="utf-8")
    torn = json.dumps(done[3].model_dump()) + '\n{"image": "imgs/im0'
    shard_path(out, 2).write_text(torn, encoding="utf-8")
    caption(tiny_blip2, manifest, out, gpus=2)
    records = read_captions(out)
    assert [r.image for r in records] == TEST_IMAGES and find_shards(out) == []
    finished = {done[i].image for i in (1, 3, 4)}
    assert all((r.caption == f"FINISHED {r.image}") == (r.image in finished) for r in records)
    expected = {r.image: r.caption for r in reference}
    assert all(r.caption == expected[r.image] for r in records if r.image not in finished)


def test_merge_keeps_manifest_order_and_each_image_once(tmp_path) -> None:
    from altcap.infer.captions_file import CaptionRecord, append_captions
    from altcap.infer.captions_resume import drop_torn_last_line

    out = tmp_path / "c.jsonl"
    make = [CaptionRecord(image=key, caption=key.upper(), model_id="m") for key in ("b", "a", "c")]
    append_captions(out, [make[0]])
    append_captions(shard_path(out, 0), [make[2], make[0]])  # "b" again: the first copy stays
    append_captions(shard_path(out, 1), [make[1]])
    assert merge_shards(out, ["a", "b", "c"], drop_torn_last_line) == 2
    assert [(r.image, r.caption) for r in read_captions(out)] == [("a", "A"), ("b", "B"), ("c", "C")]
    assert find_shards(out) == [] and merge_shards(out, ["a"], drop_torn_last_line) == 0
