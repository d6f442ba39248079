import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.data.configs import DataImportConfig

from .conftest import make_photo, write_manifest_lines

runner = CliRunner()


def _run(*args: str) -> object:
    return runner.invoke(app, ["data", *args], catch_exceptions=False)


# Flags vs config fields: tests/test_cli_options.py checks every command.


def test_import_check_split_end_to_end(tmp_path: Path) -> None:
    for i in range(4):
        make_photo(tmp_path / "images" / f"p{i}.jpg", seed=i)
    rows = "image,caption\n" + "".join(f"images/p{i}.jpg,photo number {i}\n" for i in range(4))
    (tmp_path / "d.csv").write_text(rows + "images/p3.jpg,\n")
    result = _run("import", "csv", str(tmp_path / "d.csv"), "--out", str(tmp_path / "ds"))
    assert result.exit_code == 0, result.output
    assert "4 images, 5 captions" in result.output
    manifest = tmp_path / "ds" / "manifest.jsonl"
    result = _run("check", str(manifest), "--out", str(tmp_path / "chk"), "--workers", "1")
    # exit 1: a caption was dropped; the clean manifest is still written
    assert result.exit_code == 1, result.output
    assert "CAPTION_EMPTY" in result.output and "1 errors" in result.output
    assert (tmp_path / "chk" / "manifest.clean.jsonl").is_file()
    strict = _run("check", str(manifest), "--out", str(tmp_path / "chk2"), "--strict", "--set", "workers=1")
    assert strict.exit_code == 1
    clean = tmp_path / "chk" / "manifest.clean.jsonl"
    result = _run(
        "split",
        str(clean),
        "--out",
        str(tmp_path / "sp"),
        "--seed",
        "3",
        "--val-fraction",
        "0.25",
        "--test-fraction",
        "0.25",
        "--check-report",
        str(tmp_path / "chk" / "check_report.json"),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "sp" / "split_report.json").read_text())
    assert {s: v["records"] for s, v in report["per_split"].items()} == {"train": 2, "val": 1, "test": 1}
    assert report["provenance"]["config"]["seed"] == 3


def test_strict_passes_on_a_clean_dataset(tmp_path: Path) -> None:
    make_photo(tmp_path / "a.jpg", seed=1)
    manifest = write_manifest_lines(tmp_path / "m.jsonl", [{"image": "a.jpg", "captions": ["A photo."]}])
    result = _run("check", str(manifest), "--out", str(tmp_path / "out"), "--strict")
    assert result.exit_code == 0, result.output


def test_check_without_manifest_checks_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run("check")
    assert result.exit_code == 0, result.output
    assert "embedded Flickr8k sample" in result.output
    report = json.loads((tmp_path / "altcap-check" / "check_report.json").read_text())
    assert report["summary"]["images_checked"] == 60


def test_config_file_and_bad_values_are_reported(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("format: csv\nsource: nowhere.csv\n")
    result = runner.invoke(
        app, ["data", "import", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "nowhere.csv: not found" in result.output
    result = runner.invoke(app, ["data", "import", "tsv", str(tmp_path)])
    assert result.exit_code == 2
    # The generated argument is typed from the config's Literal: the error lists the valid formats.
    assert re.search(r"'tsv' is not one of", result.output) and "'csv'" in result.output


def test_formats_lists_every_importer() -> None:
    result = _run("formats")
    assert result.output.split() == list(DataImportConfig.model_fields["format"].annotation.__args__)


def test_import_warns_about_images_the_folder_lacks(tmp_path: Path) -> None:
    make_photo(tmp_path / "images" / "p0.jpg", seed=0)
    rows = "image,caption\nimages/p0.jpg,a dog\nimages/gone.jpg,a cat\nimages/lost.png,a cow\n"
    (tmp_path / "d.csv").write_text(rows)
    result = _run("import", "csv", str(tmp_path / "d.csv"), "--out", str(tmp_path / "ds"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: 2 of 3 image(s) named in" in text and "are not in the folder" in text, text
    assert "gone.jpg" in text and "lost.png" in text
    report = json.loads((tmp_path / "ds" / "import_report.json").read_text())
    assert report["counts"]["IMAGE_NOT_FOUND"] == 2
    noted = sorted(Path(n["message"].split(":")[0]).name for n in report["notes"])
    assert noted == ["gone.jpg", "lost.png"]


def test_check_refuses_a_12000_px_square_image_without_decoding_it(tmp_path: Path) -> None:
    """Issue 27 item 9: the decode limit, from the header, in `data check` too (configurable)."""
    from .conftest import write_png_header

    make_photo(tmp_path / "images" / "ok.jpg", seed=1)
    write_png_header(tmp_path / "images" / "huge.png", 12_000, 12_000)
    rows = [{"image": f"images/{n}", "captions": ["a photo"]} for n in ("ok.jpg", "huge.png")]
    manifest = write_manifest_lines(tmp_path / "m.jsonl", rows)
    result = _run("check", str(manifest), "--out", str(tmp_path / "chk"), "--workers", "1")
    text = " ".join(result.output.split())
    assert "1 errors" in text and "removed 1 records" in text
    report = json.loads((tmp_path / "chk" / "check_report.json").read_text())
    [bomb] = [f for f in report["findings"] if f["code"] == "IMAGE_DECOMPRESSION_BOMB"]
    assert "12000x12000 = 144,000,000 pixels > max_decoded_pixels=50,000,000" in bomb["message"]
    smaller = _run("check", str(manifest), "-o", str(tmp_path / "chk2"), "--set", "max_decoded_pixels=1000")
    assert "2 errors" in " ".join(smaller.output.split())  # the limit is configurable: now both are refused


def test_check_exit_codes_and_refusal_to_replace_an_earlier_result(tmp_path: Path) -> None:
    out = tmp_path / "chk"
    clean = _run("check", "--out", str(out), "--no-images")
    assert clean.exit_code == 0, clean.output  # the embedded sample: nothing dropped
    again = _run("check", "--out", str(out), "--no-images")
    assert again.exit_code == 2 and "pass --force" in again.output
    before = (out / "check_report.json").stat().st_mtime_ns
    assert (out / "check_report.json").stat().st_mtime_ns == before
    forced = _run("check", "--out", str(out), "--no-images", "--force")
    assert forced.exit_code == 0, forced.output
    unreadable = _run("check", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x"))
    assert unreadable.exit_code == 2 and "missing.jsonl" in unreadable.output
    help_text = runner.invoke(app, ["data", "check", "--help"], env={"COLUMNS": "200"}).output
    assert "0 = nothing dropped" in help_text and "2 = bad usage" in help_text
