from pathlib import Path

from altcap.data.configs import DataImportConfig
from altcap.data.importer import run_data_import
from altcap.data.manifest import read_manifest, resolve_image
from altcap.data.sample import build_sample, sample_dir, sample_manifest

from .conftest import FLICKR8K


def test_sample_is_small_complete_and_split_40_10_10() -> None:
    records = read_manifest(sample_manifest())
    assert [sum(r.split == s for r in records) for s in ("train", "val", "test")] == [40, 10, 10]
    assert all(len(r.captions) == 5 and resolve_image(sample_manifest(), r).is_file() for r in records)
    size_bytes = sum(p.stat().st_size for p in sample_dir().rglob("*") if p.is_file())
    assert size_bytes < 2_000_000
    assert "Hodosh" in (sample_dir() / "README.md").read_text()


def test_flickr8k_import_of_the_sample_reproduces_its_manifest(tmp_path: Path) -> None:
    cfg = DataImportConfig(format="flickr8k", source=sample_dir(), out_dir=tmp_path)
    run_data_import(cfg)
    shipped = read_manifest(sample_manifest())
    fresh = read_manifest(tmp_path / "manifest.jsonl")
    assert [r.captions for r in fresh] == [r.captions for r in shipped]
    assert [resolve_image(tmp_path / "manifest.jsonl", r) for r in fresh] == [
        resolve_image(sample_manifest(), r) for r in shipped
    ]


def test_selection_rule_is_first_n_of_each_official_list(tmp_path: Path) -> None:
    if not FLICKR8K.is_dir():
        import pytest

        pytest.skip(f"real Flickr8k not present at {FLICKR8K}")
    chosen = build_sample(FLICKR8K, tmp_path, {"train": 40, "val": 10, "test": 10})
    shipped = sorted(p.name for p in (sample_dir() / "Images").iterdir())
    assert sorted(chosen) == shipped
    assert (tmp_path / "Flickr8k.token.txt").read_bytes() == (
        sample_dir() / "Flickr8k.token.txt"
    ).read_bytes()
