"""Which images a caption run covers: collected, screened before the model loads, ordered for batching."""

from __future__ import annotations

import pytest

from altcap.infer.config import CaptionConfig
from altcap.infer.items import CaptionError, collect_items, order_for_throughput, screen_items


def make_config(source, tmp_path, **changes) -> CaptionConfig:
    return CaptionConfig(manifest=source, out=tmp_path / "c.jsonl").model_copy(update=changes)


def test_collects_the_split_in_manifest_order_up_to_the_limit(manifest, tmp_path) -> None:
    items = collect_items(make_config(manifest, tmp_path))
    assert [item.key for item in items] == [f"imgs/im{i}.jpg" for i in range(5)]
    assert items[0].path == manifest.parent / "imgs" / "im0.jpg" and items[2].prompt == "Say what is there."
    assert len(collect_items(make_config(manifest, tmp_path, limit=2))) == 2


def test_collects_a_folder_by_relative_path(manifest, tmp_path) -> None:
    cfg = make_config(manifest, tmp_path, manifest=None, images=manifest.parent)
    assert [item.key for item in collect_items(cfg)] == [f"imgs/im{i}.jpg" for i in range(7)]


def test_missing_images_empty_splits_and_folders_are_named(manifest, tmp_path) -> None:
    (manifest.parent / "imgs" / "im1.jpg").unlink()
    with pytest.raises(CaptionError, match=r"1 image\(s\) not found: .*im1\.jpg.*altcap data check"):
        collect_items(make_config(manifest, tmp_path))
    with pytest.raises(CaptionError, match="no records with split='val'; check --split"):
        collect_items(make_config(manifest, tmp_path, split="val"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptionError, match="no image files"):
        collect_items(make_config(manifest, tmp_path, manifest=None, images=tmp_path / "empty"))


def test_screening_stops_on_an_unreadable_image_or_leaves_it_out(manifest, tmp_path) -> None:
    (manifest.parent / "imgs" / "im3.jpg").write_bytes(b"not a jpeg")
    cfg = make_config(manifest, tmp_path)
    with pytest.raises(CaptionError, match=r"im3\.jpg: not an image Pillow can decode"):
        screen_items(cfg, collect_items(cfg))
    skipping = make_config(manifest, tmp_path, skip_unreadable_images=True)
    kept, [unreadable] = screen_items(skipping, collect_items(skipping))
    assert [item.key for item in kept] == ["imgs/im0.jpg", "imgs/im1.jpg", "imgs/im2.jpg", "imgs/im4.jpg"]
    assert unreadable["image"] == "imgs/im3.jpg" and unreadable["records"] == [f"{manifest}:4"]


def test_order_groups_by_prompt_then_aspect_ratio(manifest, tmp_path) -> None:
    ordered = order_for_throughput(collect_items(make_config(manifest, tmp_path)))
    # No prompt first (sorted by width/height: 40x56 is 0.7, 40x24 is 1.7), then the prompted image.
    assert [item.key for item in ordered] == [f"imgs/im{i}.jpg" for i in (4, 3, 1, 0, 2)]
