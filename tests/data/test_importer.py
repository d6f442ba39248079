import json
from pathlib import Path

import pytest

from altcap.data.configs import IMPORT_FORMATS, DataImportConfig
from altcap.data.import_common import DataImportError, place_image
from altcap.data.importer import IMPORTERS, run_data_import


def test_every_format_has_an_importer() -> None:
    assert set(IMPORTERS) == set(IMPORT_FORMATS)


def test_writes_report_with_provenance_and_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("image,caption\na.jpg,hello\n")
    cfg = DataImportConfig(format="csv", source=tmp_path / "d.csv", out_dir=tmp_path / "out")
    run_data_import(cfg)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["counts"]["records"] == 1 and report["counts"]["captions"] == 1
    assert len(report["provenance"]["manifest_sha256"]) == 64
    before = (tmp_path / "out" / "manifest.jsonl").read_bytes()
    with pytest.raises(DataImportError, match="already exists; choose another --out or pass --overwrite"):
        run_data_import(cfg)
    assert (tmp_path / "out" / "manifest.jsonl").read_bytes() == before
    run_data_import(cfg.model_copy(update={"overwrite": True}))


def test_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataImportError, match=r"nowhere\.json: not found"):
        run_data_import(DataImportConfig(format="coco", source=tmp_path / "nowhere.json", out_dir=tmp_path))


def test_place_image_relative_only_under_out(tmp_path: Path) -> None:
    assert place_image(tmp_path / "out" / "img" / "a.jpg", tmp_path / "out") == "img/a.jpg"
    assert place_image(tmp_path / "elsewhere" / "a.jpg", tmp_path / "out") == str(
        tmp_path / "elsewhere" / "a.jpg"
    )
