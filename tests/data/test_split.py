import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from altcap.data.configs import DataSplitConfig
from altcap.data.manifest import ManifestError, ManifestRecord, read_manifest, write_manifest
from altcap.data.split import run_data_split


def _manifest(path: Path, n: int, split_every: int = 0) -> Path:
    records = [
        ManifestRecord(
            image=f"img/{i:03d}.jpg",
            captions=[f"c{i}"],
            split=("test" if split_every and i % split_every == 0 else None),
        )
        for i in range(n)
    ]
    write_manifest(path, records)
    return path


def _split(manifest: Path, out: Path, **fields: object) -> tuple[dict, list[ManifestRecord]]:
    report = run_data_split(DataSplitConfig(manifest=manifest, out_dir=out, **fields))
    return report, read_manifest(out / "manifest.jsonl")


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.jsonl", 200)
    _, first = _split(manifest, tmp_path / "a")
    _, again = _split(manifest, tmp_path / "b")
    _, other = _split(manifest, tmp_path / "c", seed=1)
    assert [r.split for r in first] == [r.split for r in again]
    assert [r.split for r in first] != [r.split for r in other]
    counts = {s: sum(r.split == s for r in first) for s in ("train", "val", "test")}
    assert counts == {"train": 160, "val": 20, "test": 20}


def test_keeps_existing_splits_unless_resplit(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.jsonl", 100, split_every=10)
    report, kept = _split(manifest, tmp_path / "a")
    assert all(r.split == "test" for i, r in enumerate(kept) if i % 10 == 0)
    assert report["kept_existing"] == 10 and report["newly_assigned"] == 90
    report, fresh = _split(manifest, tmp_path / "b", resplit=True)
    assert report["newly_assigned"] == 100
    assert sum(r.split == "test" for r in fresh) == 10


def test_same_image_and_duplicates_never_straddle_splits(tmp_path: Path) -> None:
    records = [ManifestRecord(image=f"img/{i:03d}.jpg", captions=["c"]) for i in range(60)]
    records.append(ManifestRecord(image="img/000.jpg", captions=["listed twice"]))
    write_manifest(tmp_path / "m.jsonl", records)
    groups = [[str(tmp_path / "img" / f"{i:03d}.jpg") for i in range(k, k + 5)] for k in (0, 10, 20, 30)]
    report_path = tmp_path / "check_report.json"
    report_path.write_text(json.dumps({"duplicate_groups": [{"images": g} for g in groups]}))
    for seed in range(5):
        _, out = _split(
            tmp_path / "m.jsonl",
            tmp_path / f"s{seed}",
            seed=seed,
            check_report=report_path,
            val_fraction=0.2,
            test_fraction=0.2,
        )
        split_of: dict[str, set] = {}
        for record in out:
            split_of.setdefault(record.image, set()).add(record.split)
        assert all(len(s) == 1 for s in split_of.values())
        for k in (0, 10, 20, 30):
            assert len({out[i].split for i in range(k, k + 5)}) == 1


def test_official_conflict_on_one_image_goes_to_the_protected_split(tmp_path: Path) -> None:
    write_manifest(
        tmp_path / "m.jsonl",
        [
            ManifestRecord(image="a.jpg", captions=["x"], split="train"),
            ManifestRecord(image="a.jpg", captions=["y"], split="test"),
        ],
    )
    report, out = _split(tmp_path / "m.jsonl", tmp_path / "o")
    assert [r.split for r in out] == ["test", "test"] and report["moved_same_image"] == 1


def test_paths_still_resolve_and_output_is_protected(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.jsonl", 5)
    _, out = _split(manifest, tmp_path / "o")
    assert out[0].image == str(tmp_path / "img" / "000.jpg")
    with pytest.raises(ManifestError, match="already exists"):
        _split(manifest, tmp_path / "o")
    with pytest.raises(ValidationError, match="must be < 1"):
        DataSplitConfig(val_fraction=0.5, test_fraction=0.5)
