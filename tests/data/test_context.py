"""The `context` column: import, `data check` findings, and the prompt template."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from altcap.data.check import run_data_check
from altcap.data.configs import DataCheckConfig, DataImportConfig
from altcap.data.context import (
    DEFAULT_CONTEXT_TEMPLATE,
    apply_context,
    check_context_template,
    read_context,
)
from altcap.data.importer import run_data_import
from altcap.data.manifest import ManifestRecord, read_manifest
from altcap.infer.config import CaptionConfig


def test_csv_context_column_and_alias_land_in_metadata(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "image,caption,context\na.jpg,A dog,news article about a flood\nb.jpg,A cat,\n", encoding="utf-8"
    )
    cfg = DataImportConfig(format="csv", source=tmp_path / "a.csv", out_dir=tmp_path / "o")
    report = run_data_import(cfg)
    records = read_manifest(tmp_path / "o" / "manifest.jsonl")
    assert records[0].metadata == {"context": "news article about a flood"}
    assert "context" not in records[1].metadata  # an empty cell means none
    assert not [n for n in report["notes"] if n["code"] == "UNKNOWN_COLUMN"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"image": "c.jpg", "caption": "x", "image_context": "shop"}))
    run_data_import(DataImportConfig(format="jsonl", source=tmp_path / "b.jsonl", out_dir=tmp_path / "p"))
    assert read_manifest(tmp_path / "p" / "manifest.jsonl")[0].metadata == {"context": "shop"}


def test_data_check_flags_non_text_and_long_contexts(tmp_path: Path) -> None:
    rows = [
        {"image": "a.jpg", "captions": ["x"], "metadata": {"context": "social post"}},
        {"image": "b.jpg", "captions": ["x"], "metadata": {"context": 42}},
        {"image": "c.jpg", "captions": ["x"], "metadata": {"context": "w" * 40}},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    cfg = DataCheckConfig(manifest=manifest, out_dir=out, check_images=False, max_context_chars=30)
    report = run_data_check(cfg)
    found = [(f["code"], f["line"], f["field"]) for f in report["findings"] if "CONTEXT" in f["code"]]
    assert found == [("CONTEXT_NOT_TEXT", 2, "metadata.context"), ("CONTEXT_TOO_LONG", 3, "metadata.context")]
    clean = read_manifest(tmp_path / "out" / "manifest.clean.jsonl")
    assert [read_context(r) for r in clean] == ["social post", None, "w" * 40]  # kept, warnings only


def test_template_puts_context_before_the_instruction_and_leaves_others_alone() -> None:
    assert apply_context("Describe it.", None, DEFAULT_CONTEXT_TEMPLATE) == "Describe it."
    prompt = apply_context("Describe it.", "a {shop} listing", "Context: {context}\n{prompt}")
    assert prompt == "Context: a {shop} listing\nDescribe it."
    record = ManifestRecord(image="a.jpg", metadata={"context": "  news \n article "})
    assert read_context(record) == "news article"


@pytest.mark.parametrize("template", ["{context} only", "{prompt} {context} {extra}", "{context {prompt}"])
def test_bad_templates_are_refused_with_the_field_named(template: str) -> None:
    with pytest.raises(ValueError, match="context_template="):
        check_context_template(template)
    with pytest.raises(ValidationError, match="context_template"):
        CaptionConfig(manifest=Path("m.jsonl"), context_template=template)


def test_a_changed_template_is_recorded_with_each_caption() -> None:
    default = CaptionConfig(manifest=Path("m.jsonl"))
    assert "context_template" not in default.record_settings()
    custom = CaptionConfig(manifest=Path("m.jsonl"), context_template="Seen in {context}. {prompt}")
    assert custom.record_settings()["context_template"] == "Seen in {context}. {prompt}"
