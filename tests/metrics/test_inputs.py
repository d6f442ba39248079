import json
from pathlib import Path

import pytest
from metrics_fixtures import CAPTIONS, GOOD, write_captions, write_jsonl, write_manifest

from altcap.metrics.config import EvaluateConfig
from altcap.metrics.inputs import EvaluateInputError, describe_names, load_inputs


def make_config(refs: Path, *preds: Path, **fields) -> EvaluateConfig:
    return EvaluateConfig(refs=refs, pred=list(preds), out=refs.parent / "out", **fields)


def test_joins_by_image_in_manifest_order(eval_files) -> None:
    inputs = load_inputs(make_config(eval_files["refs"], eval_files["worse"], eval_files["good"]))
    assert [s.name for s in inputs.systems] == ["base", "finetuned"]
    assert inputs.images[0] == "img/dog.jpg" and inputs.systems[1].captions[0] == GOOD["img/dog.jpg"]
    assert len(inputs.references[0]) == 3 and inputs.metadata[4] == {"ocr_text": "STOP"}


def test_missing_images_are_an_error_naming_them(eval_files, tmp_path: Path) -> None:
    partial = write_captions(tmp_path / "partial.jsonl", {"img/dog.jpg": "a dog"})
    with pytest.raises(EvaluateInputError) as err:
        load_inputs(make_config(eval_files["refs"], partial))
    message = str(err.value)
    assert "partial.jsonl: no caption for 'img/kids.jpg'" in message and "[5 in all]" in message
    assert "--allow-missing" in message


def test_allow_missing_scores_intersection_and_records_it(eval_files, tmp_path: Path) -> None:
    partial = write_captions(tmp_path / "partial.jsonl", {k: v for k, v in GOOD.items() if "rain" not in k})
    inputs = load_inputs(make_config(eval_files["refs"], eval_files["worse"], partial, allow_missing=True))
    assert "img/rain.jpg" not in inputs.images and len(inputs.images) == 5
    assert inputs.dropped["partial"]["missing_images"] == ["img/rain.jpg"]
    assert any("scoring 5 of 6" in w for w in inputs.warnings)


def test_duplicates_empty_and_extra_images(eval_files, tmp_path: Path) -> None:
    rows = [{"image": i, "caption": c, "model_id": "m"} for i, c in GOOD.items()]
    dup = write_jsonl(tmp_path / "dup.jsonl", [*rows, rows[0]])
    with pytest.raises(EvaluateInputError, match=r"dup.jsonl: duplicate images: 'img/dog.jpg'"):
        load_inputs(make_config(eval_files["refs"], dup))
    odd = write_captions(tmp_path / "odd.jsonl", {**GOOD, "img/dog.jpg": "  ", "img/extra.jpg": "x"})
    inputs = load_inputs(make_config(eval_files["refs"], odd))
    assert any("empty captions" in w and "'img/dog.jpg'" in w for w in inputs.warnings)
    assert any("without references" in w and "'img/extra.jpg'" in w for w in inputs.warnings)
    assert inputs.systems[0].captions[0] == "  "  # scored (as empty), not dropped


def test_wrong_encoding_and_names(eval_files, tmp_path: Path) -> None:
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes('{"image": "img/dog.jpg", "caption": "caf\u00e9", "model_id": "m"}\n'.encode("latin-1"))
    with pytest.raises(EvaluateInputError, match=r"latin1\.jsonl: not UTF-8"):
        load_inputs(make_config(eval_files["refs"], latin))
    latin_refs = tmp_path / "refs_latin1.jsonl"
    latin_refs.write_bytes(
        '{"image": "a.jpg", "captions": ["caf\u00e9"], "split": "test"}\n'.encode("latin-1")
    )
    with pytest.raises(EvaluateInputError, match=r"refs_latin1\.jsonl: not UTF-8"):
        load_inputs(make_config(latin_refs, eval_files["good"]))
    with pytest.raises(EvaluateInputError, match="--name given 1 times for 2 --pred"):
        load_inputs(make_config(eval_files["refs"], eval_files["good"], eval_files["worse"], name=["x"]))
    with pytest.raises(EvaluateInputError, match="no records with split 'val'"):
        load_inputs(make_config(eval_files["refs"], eval_files["good"], split="val"))


def test_describe_names_truncates() -> None:
    text = describe_names([f"i{n}" for n in range(13)])
    assert text.startswith("'i0', 'i1'") and "'i10'" not in text and "(+3 more) [13 in all]" in text


def _refs_with_source_ids(tmp_path: Path) -> Path:
    rows = [
        {"image": image, "captions": caps, "split": "test", "metadata": {"source_id": 100 + n}}
        for n, (image, caps) in enumerate(CAPTIONS.items())
    ]
    return write_jsonl(tmp_path / "refs.jsonl", rows)


def _write_other_tool_file(tmp_path: Path, form: str) -> Path:
    names = {image: image.split("/")[-1] for image in GOOD}
    if form == "coco_results":  # [{"image_id", "caption"}] keyed by the record's source id
        rows = [{"image_id": 100 + n, "caption": GOOD[image]} for n, image in enumerate(CAPTIONS)]
        (tmp_path / "coco.json").write_text(json.dumps(rows))
        return tmp_path / "coco.json"
    if form == "csv_spreadsheet":  # Excel-style: BOM, ';' separators, a quoted caption
        rows = "".join(f'{names[i]};"{c}";x\r\n' for i, c in GOOD.items())
        (tmp_path / "sheet.csv").write_bytes(("\ufefffile_name;Caption;notes\r\n" + rows).encode("utf-8"))
        return tmp_path / "sheet.csv"
    if form == "jsonl_file_names":  # `altcap caption --images` output, no model_id
        rows = [{"image": names[i], "text": c} for i, c in GOOD.items()]
        return write_jsonl(tmp_path / "folder.jsonl", rows)
    # a plain {image: caption} mapping, keys as absolute paths on another machine
    (tmp_path / "mapping.json").write_text(json.dumps({f"/data/x/{i}": c for i, c in GOOD.items()}))
    return tmp_path / "mapping.json"


@pytest.mark.parametrize("form", ["coco_results", "csv_spreadsheet", "jsonl_file_names", "absolute_paths"])
def test_predictions_from_other_tools_join_by_path_name_or_source_id(tmp_path: Path, form: str) -> None:
    """Issue 27 item 11: only an image key and a caption are needed, in JSON, JSONL or CSV."""
    pred = _write_other_tool_file(tmp_path, form)
    inputs = load_inputs(make_config(_refs_with_source_ids(tmp_path), pred))
    assert inputs.images == list(CAPTIONS)
    assert inputs.systems[0].captions == [GOOD[image] for image in CAPTIONS]
    assert inputs.systems[0].name == pred.stem and not inputs.warnings


def test_ambiguous_and_unmatched_keys_are_reported_with_examples(tmp_path: Path) -> None:
    refs = write_jsonl(
        tmp_path / "refs.jsonl",
        [{"image": f"{folder}/dog.jpg", "captions": ["a dog"], "split": "test"} for folder in ("a", "b")],
    )
    pred = write_jsonl(tmp_path / "p.jsonl", [{"file_name": "dog.jpg", "caption": "a dog"}])
    with pytest.raises(EvaluateInputError) as err:
        load_inputs(make_config(refs, pred))
    expected = "1 image key(s) match several manifest images, e.g. 'dog.jpg' could be a/dog.jpg or b/dog.jpg"
    assert f"p.jsonl: {expected}" in str(err.value)
    rows = [{"image": "a/dgo.jpg", "caption": "x"}, {"image": "b/dog.jpg", "caption": "y"}]
    typo = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(EvaluateInputError) as err:
        load_inputs(make_config(refs, typo))
    assert "no caption for 'a/dog.jpg'" in str(err.value) and "source_id" in str(err.value)
    warnings = load_inputs(make_config(refs, typo, allow_missing=True)).warnings
    assert any("keys matching no manifest image" in w and "'a/dgo.jpg'" in w for w in warnings)


def test_file_without_an_image_or_caption_column_names_the_accepted_ones(tmp_path: Path) -> None:
    pred = tmp_path / "p.csv"
    pred.write_text("picture,words\nimg/dog.jpg,a dog\n")
    expected = r"p\.csv: no image column; expected one of \['image', 'image_id'"
    with pytest.raises(EvaluateInputError, match=expected):
        load_inputs(make_config(write_manifest(tmp_path / "m.jsonl"), pred))
