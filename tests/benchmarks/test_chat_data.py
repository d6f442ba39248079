"""Synthetic captions, images and manifests of the chat-VLM benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.chat_data import FLICKR8K_WORD_COUNTS, make_captions, write_manifest, write_random_images


def test_captions_are_seeded_and_within_the_word_range() -> None:
    captions = make_captions(50, seed=7, min_words=20, max_words=30)
    assert captions == make_captions(50, seed=7, min_words=20, max_words=30)
    assert captions != make_captions(50, seed=8, min_words=20, max_words=30)
    assert all(20 <= len(c.split()) <= 30 and c.endswith(".") for c in captions)


def test_flickr8k_lengths_follow_its_histogram() -> None:
    captions = make_captions(4000, seed=1, lengths="flickr8k")
    words = [len(c.split()) for c in captions]
    histogram_mean = sum(n * k for n, k in FLICKR8K_WORD_COUNTS.items()) / sum(FLICKR8K_WORD_COUNTS.values())
    assert histogram_mean == pytest.approx(10.88, abs=0.01)  # Flickr8k.token.txt's mean caption length
    assert sum(words) / len(words) == pytest.approx(histogram_mean, abs=0.3)
    assert set(words) <= set(FLICKR8K_WORD_COUNTS) and min(words) <= 4 and max(words) >= 22
    with pytest.raises(ValueError, match="flickr8k"):
        make_captions(1, lengths="uniform")


def test_images_and_manifest_are_written_once_with_absolute_paths(tmp_path: Path) -> None:
    paths = write_random_images(tmp_path / "images", 3, (64, 48))
    stamp = paths[0].stat().st_mtime_ns
    assert write_random_images(tmp_path / "images", 3, (64, 48)) == paths
    assert paths[0].stat().st_mtime_ns == stamp  # kept, not rewritten
    assert Image.open(paths[2]).size == (64, 48)
    manifest = write_manifest(tmp_path / "m.jsonl", paths, make_captions(3))
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [row["image"] for row in rows] == [str(p.resolve()) for p in paths]
    assert {row["split"] for row in rows} == {"train"}
