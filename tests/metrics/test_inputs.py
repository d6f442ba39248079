from pathlib import Path

import pytest
from metrics_fixtures import GOOD, write_captions, write_jsonl

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
