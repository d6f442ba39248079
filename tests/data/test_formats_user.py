import json
from pathlib import Path

import pytest

from altcap.data.configs import DataImportConfig
from altcap.data.import_common import DataImportError
from altcap.data.importer import run_data_import
from altcap.data.manifest import read_manifest

from .conftest import make_photo


def _import(fmt: str, source: Path, out: Path, **fields: object) -> tuple[dict, list]:
    report = run_data_import(DataImportConfig(format=fmt, source=source, out_dir=out, **fields))
    return report, read_manifest(out / "manifest.jsonl")


def test_csv_groups_rows_per_image(tmp_path: Path) -> None:
    csv_text = (
        "image,caption,prompt,split\n"
        "a.jpg,First caption,Describe it,train\n"
        'b.jpg,"Has, a comma",,dev\n'
        "a.jpg,Second caption,Describe it,train\n"
        "a.jpg,Third,Other prompt,test\n"
    )
    (tmp_path / "data.csv").write_text(csv_text)
    report, records = _import("csv", tmp_path / "data.csv", tmp_path)
    assert [(r.image, r.captions, r.prompt, r.split) for r in records] == [
        ("a.jpg", ["First caption", "Second caption", "Third"], "Describe it", "train"),
        ("b.jpg", ["Has, a comma"], None, "val"),
    ]
    conflicts = sorted((n["code"], n["line"]) for n in report["notes"])
    assert conflicts == [("CONFLICTING_PROMPT", 5), ("CONFLICTING_SPLIT", 5)]


def test_csv_errors_name_file_line_and_value(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("image,caption,split\na.jpg,hi,training\n")
    with pytest.raises(DataImportError, match=r"bad\.csv:2: split='training' is not a split"):
        _import("csv", tmp_path / "bad.csv", tmp_path / "out")
    (tmp_path / "nocap.csv").write_text("image,description\na.jpg,hi\n")
    with pytest.raises(
        DataImportError, match=r"no caption field; expected one of .* found \['image', 'description'\]"
    ):
        _import("csv", tmp_path / "nocap.csv", tmp_path / "out")
    _, records = _import("csv", tmp_path / "nocap.csv", tmp_path / "out", caption_field="description")
    assert records[0].captions == ["hi"]


def test_csv_keeps_non_utf8_rows_and_notes_them(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes(b"image,caption\na.jpg,caf\xe9 au lait\n")
    report, records = _import("csv", tmp_path / "latin.csv", tmp_path)
    assert records[0].captions == ["caf\ufffd au lait"]
    assert report["notes"][0]["code"] == "NOT_UTF8" and report["notes"][0]["line"] == 2


def test_jsonl_accepts_caption_or_captions_and_keeps_extras(tmp_path: Path) -> None:
    lines = [
        {"image": "x.jpg", "caption": "one", "photographer": "ana"},
        {"image": "x.jpg", "captions": ["two", "three"]},
        {"image": "/abs/y.jpg", "caption": "why", "split": "test", "prompt": "Alt text:"},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    _, records = _import("jsonl", tmp_path / "d.jsonl", tmp_path)
    assert records[0].captions == ["one", "two", "three"]
    assert records[0].metadata == {"photographer": "ana"}
    assert (records[1].image, records[1].split, records[1].prompt) == ("/abs/y.jpg", "test", "Alt text:")


def test_jsonl_bad_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"image": "a.jpg", "caption": "x"}\n{oops\n')
    with pytest.raises(DataImportError, match=r"d\.jsonl:2: not valid JSON"):
        _import("jsonl", tmp_path / "d.jsonl", tmp_path / "out")


def test_hf_imagefolder_with_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "hf"
    for split, names in {"train": ["t1.jpg", "t2.jpg"], "validation": ["v1.jpg"]}.items():
        for i, name in enumerate(names):
            make_photo(root / split / name, seed=i)
    (root / "train" / "metadata.jsonl").write_text(
        json.dumps({"file_name": "t1.jpg", "text": "a train photo"}) + "\n"
    )
    (root / "validation" / "metadata.jsonl").write_text(
        json.dumps({"file_name": "v1.jpg", "text": "a val photo", "source": "mine"}) + "\n"
    )
    report, records = _import("hf-imagefolder", root, root)
    by_image = {r.image: r for r in records}
    assert by_image["train/t1.jpg"].captions == ["a train photo"]
    assert by_image["validation/v1.jpg"].split == "val"
    assert by_image["validation/v1.jpg"].metadata == {"source": "mine"}
    assert by_image["train/t2.jpg"].captions == []  # image without a metadata line: kept and noted
    assert report["counts"]["IMAGE_WITHOUT_CAPTIONS"] == 1


def test_hf_imagefolder_without_metadata_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataImportError, match=r"no metadata\.jsonl here or in train/"):
        _import("hf-imagefolder", tmp_path, tmp_path / "out")
