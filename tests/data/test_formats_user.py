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
    conflicts = sorted((n["code"], n["line"]) for n in report["notes"] if n["code"].startswith("CONFLICT"))
    assert conflicts == [("CONFLICTING_PROMPT", 5), ("CONFLICTING_SPLIT", 5)]


def test_csv_errors_name_file_line_and_value(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("image,caption,split\na.jpg,hi,training\n")
    with pytest.raises(DataImportError, match=r"bad\.csv:2: split='training' is not a split"):
        _import("csv", tmp_path / "bad.csv", tmp_path / "out")
    (tmp_path / "nocap.csv").write_text("image,words\na.jpg,hi\n")
    expected = r"nocap\.csv:2: no caption \('caption'\) column; columns are \['image', 'words'\]"
    with pytest.raises(DataImportError, match=expected):
        _import("csv", tmp_path / "nocap.csv", tmp_path / "out")
    _, records = _import("csv", tmp_path / "nocap.csv", tmp_path / "out", caption_field="words")
    assert records[0].captions == ["hi"]


def test_csv_not_utf8_is_read_as_windows_1252_and_noted(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes(b"image,caption\na.jpg,caf\xe9 au lait \x93quoted\x94\n")
    report, records = _import("csv", tmp_path / "latin.csv", tmp_path)
    assert records[0].captions == ["caf\u00e9 au lait \u201cquoted\u201d"]
    assert report["notes"][0]["code"] == "READ_AS_CP1252" and "cp1252" in report["warnings"][0]


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


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_block(language: str) -> str:
    section = README.read_text(encoding="utf-8").split("## Your own captions", 1)[1].split("\n## ", 1)[0]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_readme_shows_the_column_table_and_its_examples_import(tmp_path: Path) -> None:
    """Issue 27 item 12: the README's table is the code's table, and its example files import."""
    from altcap.data.import_columns import describe_columns

    assert describe_columns(markdown=True) in README.read_text(encoding="utf-8")
    for name in ("dog.jpg", "menu.jpg"):
        make_photo(tmp_path / "photos" / name, seed=len(name))
    (tmp_path / "c.csv").write_text(_readme_block("csv"), encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(_readme_block("jsonl"), encoding="utf-8")
    report, records = _import("csv", tmp_path / "c.csv", tmp_path / "csv")
    assert [(Path(r.image).name, len(r.captions), r.split) for r in records] == [
        ("dog.jpg", 2, "train"), ("menu.jpg", 1, "test")
    ]
    assert not report["warnings"]
    report, records = _import("jsonl", tmp_path / "c.jsonl", tmp_path / "jsonl")
    assert [len(r.captions) for r in records] == [2, 2]
    assert records[1].metadata == {"source_id": "m-17", "photographer": "ana"}
    assert report["counts"]["UNKNOWN_COLUMN"] == 1 and "'photographer'" in report["warnings"][0]


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("utf-8-sig", 'Image;Caption;Split\r\na.jpg;"Two lines\r\nin one cell";train\r\nb.jpg;Plain;test'),
        ("utf-8", "file_name\ttext\tsplit\na.jpg\tTwo lines in one cell\ttrain\nb.jpg\tPlain\ttest\n"),
        ("cp1252", 'image;caption;split\na.jpg;"Two lines\nin one cell";train\nb.jpg;Plain;test\n'),
    ],
)
def test_csv_as_spreadsheets_save_it(tmp_path: Path, encoding: str, text: str) -> None:
    (tmp_path / "sheet.csv").write_bytes(text.encode(encoding))
    _, records = _import("csv", tmp_path / "sheet.csv", tmp_path)
    assert [(r.image, r.captions, r.split) for r in records] == [
        ("a.jpg", ["Two lines in one cell"], "train"),
        ("b.jpg", ["Plain"], "test"),
    ]


def test_numbered_and_json_list_captions_and_unknown_columns(tmp_path: Path) -> None:
    csv_text = 'image,caption_1,caption_2,caption 3,notes\na.jpg,one,two,,x\nb.jpg,"[""p"", ""q""]",,,y\n'
    (tmp_path / "d.csv").write_text(csv_text)
    report, records = _import("csv", tmp_path / "d.csv", tmp_path)
    assert [r.captions for r in records] == [["one", "two"], ["p", "q"]]
    assert [r.metadata for r in records] == [{"notes": "x"}, {"notes": "y"}]
    [note] = [n for n in report["notes"] if n["code"] == "UNKNOWN_COLUMN"]
    assert "'notes'" in note["message"] and note["line"] == 1


def test_import_help_lists_every_column_and_alias() -> None:
    from typer.testing import CliRunner

    from altcap.cli import app
    from altcap.data.import_columns import COLUMNS

    result = CliRunner().invoke(app, ["data", "import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for column in COLUMNS:
        assert f"{column.name} (" in result.output and ", ".join(column.aliases) in result.output


def test_hf_imagefolder_finds_phone_formats(tmp_path: Path) -> None:
    from image_damage import write_phone_photos

    photos = write_phone_photos(tmp_path / "hf")
    row = {"file_name": photos[0].name, "text": "a heic"}
    (tmp_path / "hf" / "metadata.jsonl").write_text(json.dumps(row) + "\n")
    report, records = _import("hf-imagefolder", tmp_path / "hf", tmp_path / "out")
    assert sorted(Path(r.image).suffix for r in records) == [".avif", ".heic", ".webp"]
    assert report["counts"]["IMAGE_WITHOUT_CAPTIONS"] == 2 and not report["warnings"]
