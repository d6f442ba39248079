import json
from pathlib import Path

import pytest

from altcap.data.configs import DataImportConfig
from altcap.data.import_common import DataImportError
from altcap.data.importer import run_data_import
from altcap.data.manifest import read_manifest, resolve_image

from .conftest import FLICKR8K, make_photo


def _import(fmt: str, source: Path, out: Path, **fields: object) -> tuple[dict, list]:
    report = run_data_import(DataImportConfig(format=fmt, source=source, out_dir=out, **fields))
    return report, read_manifest(out / "manifest.jsonl")


def _flickr8k_folder(root: Path) -> Path:
    for i in range(5):
        make_photo(root / "Images" / f"im{i}.jpg", seed=i)
    tokens = [f"im{i}.jpg#{n}\tcaption {n} of im{i} ." for i in range(4) for n in range(5)]
    tokens += ["gone.jpg#0\ta caption whose image is missing", "garbage line without a tab"]
    (root / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n")
    (root / "Flickr_8k.trainImages.txt").write_text("im0.jpg\nim1.jpg\n")
    (root / "Flickr_8k.devImages.txt").write_text("im2.jpg\n")
    (root / "Flickr_8k.testImages.txt").write_text("gone.jpg\n")
    return root


def test_flickr8k_round_trip_reports_what_it_cannot_place(tmp_path: Path) -> None:
    source = _flickr8k_folder(tmp_path / "f8k")
    report, records = _import("flickr8k", source, tmp_path / "out")
    by_name = {Path(r.image).name: r for r in records}
    assert by_name["im0.jpg"].captions == [f"caption {n} of im0 ." for n in range(5)]
    assert (by_name["im0.jpg"].split, by_name["im2.jpg"].split, by_name["im3.jpg"].split) == (
        "train",
        "val",
        None,
    )
    assert by_name["im4.jpg"].captions == []  # image without captions kept, not dropped
    assert by_name["gone.jpg"].split == "test"  # captions without an image kept for `data check`
    counts = report["counts"]
    assert counts["IMAGE_IN_NO_SPLIT"] == 2  # im3, im4
    assert counts["CAPTIONS_WITHOUT_IMAGE"] == 1 and counts["IMAGE_WITHOUT_CAPTIONS"] == 1
    bad = [n for n in report["notes"] if n["code"] == "MALFORMED_LINE"]
    assert bad[0]["line"] == 22 and bad[0]["text"] == "garbage line without a tab"
    assert resolve_image(tmp_path / "out" / "manifest.jsonl", by_name["im0.jpg"]).is_file()
    assert Path(by_name["im0.jpg"].image).is_absolute()  # images live outside the output folder


def test_flickr8k_paths_are_relative_when_images_are_under_out(tmp_path: Path) -> None:
    source = _flickr8k_folder(tmp_path / "f8k")
    _, records = _import("flickr8k", source, source)
    assert "Images/im0.jpg" in {r.image for r in records}
    assert not any(Path(r.image).is_absolute() for r in records)


def test_flickr8k_needs_its_token_file(tmp_path: Path) -> None:
    with pytest.raises(DataImportError, match=r"Flickr8k\.token\.txt: not found"):
        _import("flickr8k", tmp_path, tmp_path / "out")


@pytest.mark.skipif(not FLICKR8K.is_dir(), reason=f"real Flickr8k not present at {FLICKR8K}")
def test_flickr8k_real_files(tmp_path: Path) -> None:
    report, records = _import("flickr8k", FLICKR8K, tmp_path / "out")
    assert len(records) == 8091 and sum(len(r.captions) for r in records) == 40455
    assert report["counts"]["records_per_split"] == {"train": 6000, "val": 1000, "test": 1000, "None": 91}
    assert report["counts"]["IMAGE_IN_NO_SPLIT"] == 91
    assert all(len(r.captions) == 5 for r in records)


def _coco(path: Path, images: Path) -> Path:
    make_photo(images / "a.jpg", 1)
    make_photo(images / "b.jpg", 2)
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.jpg"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "first"},
            {"id": 11, "image_id": 1, "caption": "second"},
            {"id": 12, "image_id": 99, "caption": "orphan"},
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_coco_round_trip(tmp_path: Path) -> None:
    ann = _coco(tmp_path / "captions_val.json", tmp_path / "imgs")
    report, records = _import("coco", ann, tmp_path / "out", images_dir=tmp_path / "imgs", split="val")
    assert [r.captions for r in records] == [["first", "second"], []]
    assert records[0].metadata == {"source": "coco", "source_id": 1, "width": 64, "height": 48}
    assert {r.split for r in records} == {"val"}
    orphan = [n for n in report["notes"] if n["code"] == "CAPTIONS_WITHOUT_IMAGE"]
    assert orphan[0]["caption"] == "orphan"
    assert report["counts"]["IMAGE_WITHOUT_CAPTIONS"] == 1


def test_coco_rejects_other_json(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataImportError, match=r"x\.json: not a COCO captions file: needs keys"):
        _import("coco", tmp_path / "x.json", tmp_path / "out")


def test_karpathy_restval_is_train(tmp_path: Path) -> None:
    images = [
        {
            "filepath": "val2014",
            "filename": "a.jpg",
            "split": "restval",
            "cocoid": 5,
            "sentences": [{"raw": "A raw caption.", "tokens": ["a", "raw", "caption"]}],
        },
        {"filename": "b.jpg", "split": "test", "imgid": 7, "sentences": [{"tokens": ["only", "tokens"]}]},
    ]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    _, records = _import("karpathy", tmp_path / "dataset_coco.json", tmp_path / "out")
    assert [r.split for r in records] == ["train", "test"]
    assert records[0].metadata["original_split"] == "restval"
    assert records[0].image == str(tmp_path / "val2014" / "a.jpg")
    assert records[1].captions == ["only tokens"]


def test_vizwiz_excludes_flagged_captions_but_keeps_them(tmp_path: Path) -> None:
    data = {
        "images": [{"id": 1, "file_name": "v1.jpg", "text_detected": True}, {"id": 2, "file_name": "v2.jpg"}],
        "annotations": [
            {"image_id": 1, "caption": "A can of beans.", "is_rejected": False, "is_precanned": False},
            {
                "image_id": 1,
                "caption": "Quality issues are too severe.",
                "is_rejected": False,
                "is_precanned": True,
            },
            {"image_id": 2, "caption": "junk", "is_rejected": True, "is_precanned": False},
        ],
    }
    (tmp_path / "val.json").write_text(json.dumps(data))
    report, records = _import("vizwiz", tmp_path / "val.json", tmp_path / "out")
    assert records[0].captions == ["A can of beans."]
    assert records[0].metadata["text_detected"] is True
    assert records[0].metadata["excluded_captions"] == [
        {"caption": "Quality issues are too severe.", "reason": "precanned"}
    ]
    assert records[1].captions == [] and records[1].metadata["excluded_captions"][0]["reason"] == "rejected"
    counts = report["counts"]
    assert (counts["captions_kept"], counts["captions_precanned"], counts["captions_rejected"]) == (1, 1, 1)
    _, kept_all = _import(
        "vizwiz", tmp_path / "val.json", tmp_path / "all", include_rejected=True, include_precanned=True
    )
    assert [len(r.captions) for r in kept_all] == [2, 1]
