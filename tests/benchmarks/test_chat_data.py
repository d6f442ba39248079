"""Synthetic captions, images and manifests of the chat-VLM benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from benchmarks.chat_data import make_captions, write_manifest, write_random_images


def test_captions_are_seeded_and_within_the_word_range() -> None:
    captions = make_captions(50, seed=7, min_words=20, max_words=30)
    assert captions == make_captions(50, seed=7, min_words=20, max_words=30)
    assert captions != make_captions(50, seed=8, min_words=20, max_words=30)
    assert all(20 <= len(c.split()) <= 30 and c.endswith(".") for c in captions)


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
