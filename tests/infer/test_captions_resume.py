"""Resume bookkeeping of a captions file: done images, the settings guard, torn lines, provenance runs."""

from __future__ import annotations

import json

import pytest

from altcap.infer.captions_file import CaptionRecord, append_captions, provenance_path
from altcap.infer.captions_resume import drop_torn_last_line, find_done_images, write_provenance
from altcap.infer.config import CaptionConfig
from altcap.infer.items import CaptionError
from altcap.models.loading import ModelConfig


def make_config(manifest, tmp_path) -> CaptionConfig:
    model = ModelConfig(model_id="some/model")
    return CaptionConfig(model=model, manifest=manifest, out=tmp_path / "c.jsonl")


def write_records(cfg: CaptionConfig, images: list[str], **changes) -> None:
    generation = {**cfg.record_settings(), **changes}
    append_captions(
        cfg.out,
        [CaptionRecord(image=i, caption="x", model_id="some/model", generation=generation) for i in images],
    )


def test_done_images_are_those_in_the_file(manifest, tmp_path) -> None:
    cfg = make_config(manifest, tmp_path)
    assert find_done_images(cfg) == set()
    write_records(cfg, ["imgs/im0.jpg", "imgs/im1.jpg"])
    assert find_done_images(cfg) == {"imgs/im0.jpg", "imgs/im1.jpg"}


def test_a_file_made_with_other_settings_is_refused_and_left_alone(manifest, tmp_path) -> None:
    cfg = make_config(manifest, tmp_path)
    write_records(cfg, ["imgs/im0.jpg"])
    write_records(cfg, ["imgs/im1.jpg"], num_beams=7)
    before = cfg.out.read_bytes()
    with pytest.raises(CaptionError, match=r"record 2 was made with generation\.num_beams=7.*another --out"):
        find_done_images(cfg)
    assert cfg.out.read_bytes() == before


def test_a_torn_last_line_is_cut_and_a_complete_one_ended(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"image": "a"}\n{"image": "b", "capt', encoding="utf-8")
    with pytest.warns(UserWarning, match="half-written"):
        assert drop_torn_last_line(path) == len('{"image": "b", "capt')
    assert path.read_text(encoding="utf-8") == '{"image": "a"}\n'
    path.write_text('{"image": "a"}', encoding="utf-8")
    assert drop_torn_last_line(path) == 0 and path.read_text(encoding="utf-8") == '{"image": "a"}\n'


def test_provenance_keeps_earlier_runs_and_replaces_a_rerun_of_the_same_id(manifest, tmp_path) -> None:
    cfg = make_config(manifest, tmp_path)
    write_provenance(cfg, "blip", {"id": "1", "status": "done"})
    write_provenance(cfg, "blip", {"id": "2", "status": "running"})
    write_provenance(cfg, "blip", {"id": "2", "status": "done"})
    provenance = json.loads(provenance_path(cfg.out).read_text(encoding="utf-8"))
    assert provenance_path(cfg.out) == tmp_path / "c.jsonl.provenance.json"
    assert [(run["id"], run["status"]) for run in provenance["runs"]] == [("1", "done"), ("2", "done")]
    assert provenance["family"] == "blip" and provenance["model_id"] == "some/model"
