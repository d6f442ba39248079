"""`altcap caption`: batched generation, resume after a crash, settings guard, CLI."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import altcap.infer.caption as caption_module
from altcap.cli import app
from altcap.config import field_paths
from altcap.infer.caption import run_caption
from altcap.infer.captions_file import provenance_path, read_captions
from altcap.infer.commands import FLAG_FIELDS, caption_command
from altcap.infer.config import CaptionConfig, GenerationConfig
from altcap.infer.items import CaptionError, collect_items, order_for_throughput
from altcap.models.loading import ModelConfig, ModelLoadError, load_model
from image_damage import DAMAGE_KINDS, write_phone_photos, write_png_header

# Generated parameters that are not config fields.
NOT_FLAGS = {"config", "config_file", "set_", "altcap_context"}

TEST_IMAGES = {f"imgs/im{i}.jpg" for i in range(5)}


def make_config(model: Path, manifest: Path, out: Path, **changes) -> CaptionConfig:
    generation = GenerationConfig(num_beams=2, max_new_tokens=5, min_new_tokens=5)
    cfg = CaptionConfig(
        model=ModelConfig(model_id=str(model), device="cpu"),
        manifest=manifest,
        out=out,
        generation=generation,
        batch_size=2,
    )
    return cfg.model_copy(update=changes)


@pytest.mark.slow
def test_captions_every_test_image_with_provenance(tiny_blip2, manifest, tmp_path) -> None:
    out = tmp_path / "new_folder" / "captions.jsonl"  # a folder that does not exist yet
    summary = run_caption(make_config(tiny_blip2, manifest, out))
    records = read_captions(out)
    assert {r.image for r in records} == TEST_IMAGES and len(records) == 5
    assert summary.written_images == 5 and summary.skipped_images == 0
    assert all(r.caption and r.model_id == str(tiny_blip2) and r.adapter is None for r in records)
    assert records[0].generation["num_beams"] == 2
    provenance = json.loads(provenance_path(out).read_text())
    assert provenance["family"] == "blip2" and provenance["manifest_sha256"]
    assert provenance["runs"][-1]["status"] == "done" and provenance["runs"][-1]["written_images"] == 5


@pytest.mark.slow
def test_resume_after_crash_completes_without_duplicates(tiny_blip2, manifest, tmp_path, monkeypatch) -> None:
    reference_out = tmp_path / "reference.jsonl"
    run_caption(make_config(tiny_blip2, manifest, reference_out))
    out = tmp_path / "captions.jsonl"
    real_append = caption_module.append_captions
    calls = []

    def append_then_crash(path, records):
        real_append(path, records)
        calls.append(len(records))
        if len(calls) == 1:
            raise KeyboardInterrupt  # killed right after the first batch reached disk

    monkeypatch.setattr(caption_module, "append_captions", append_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_caption(make_config(tiny_blip2, manifest, out))
    first_batch = read_captions(out)
    assert 0 < len(first_batch) < 5
    monkeypatch.setattr(caption_module, "append_captions", real_append)
    summary = run_caption(make_config(tiny_blip2, manifest, out))
    records = read_captions(out)
    assert summary.skipped_images == len(first_batch)
    assert sorted(r.image for r in records) == sorted(TEST_IMAGES)
    reference = {r.image: r.caption for r in read_captions(reference_out)}
    assert {r.image: r.caption for r in records} == reference


@pytest.mark.slow
def test_resume_drops_a_torn_last_line(tiny_blip2, manifest, tmp_path) -> None:
    out = tmp_path / "captions.jsonl"
    run_caption(make_config(tiny_blip2, manifest, out, limit=2))
    with out.open("a", encoding="utf-8") as handle:
        handle.write('{"image": "imgs/im4.jpg", "capt')
    with pytest.warns(UserWarning, match="half-written"):
        run_caption(make_config(tiny_blip2, manifest, out))
    assert sorted(r.image for r in read_captions(out)) == sorted(TEST_IMAGES)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"generation": GenerationConfig(num_beams=4, max_new_tokens=5, min_new_tokens=5)},
            "generation.num_beams",
        ),
        ({"prompt": "Describe."}, "generation.prompt"),
        ({"model": ModelConfig(model_id="other/model")}, "model_id"),
    ],
)
def test_refuses_to_mix_settings(tiny_blip2, manifest, tmp_path, change, named) -> None:
    out = tmp_path / "captions.jsonl"
    run_caption(make_config(tiny_blip2, manifest, out, limit=2))
    before = out.read_text()
    with pytest.raises(CaptionError, match=rf"{out}.*{named}.*another --out"):
        run_caption(make_config(tiny_blip2, manifest, out).model_copy(update=change))
    assert out.read_text() == before


@pytest.mark.slow
def test_images_folder_source(tiny_blip2, manifest, tmp_path) -> None:
    out = tmp_path / "folder.jsonl"
    cfg = make_config(tiny_blip2, manifest, out).model_copy(
        update={"manifest": None, "images": manifest.parent}
    )
    run_caption(cfg)
    assert {r.image for r in read_captions(out)} == {f"imgs/im{i}.jpg" for i in range(7)}


def test_bad_inputs_fail_before_loading_the_model(tiny_blip2, manifest, tmp_path) -> None:
    (manifest.parent / "imgs" / "im1.jpg").unlink()
    with pytest.raises(CaptionError, match=r"1 image\(s\) not found: .*im1\.jpg"):
        run_caption(make_config(tiny_blip2, manifest, tmp_path / "a.jsonl"))
    with pytest.raises(CaptionError, match="no records with split='val'"):
        run_caption(make_config(tiny_blip2, manifest, tmp_path / "b.jsonl", split="val"))
    with pytest.raises(ModelLoadError, match="folder not found"):
        run_caption(make_config(tmp_path / "no-model", manifest, tmp_path / "c.jsonl", split="train"))
    assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "c.jsonl").exists()


def test_unreadable_image_is_named(tiny_blip2, manifest, tmp_path) -> None:
    (manifest.parent / "imgs" / "im3.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CaptionError, match=r"im3\.jpg: not an image Pillow can decode"):
        run_caption(make_config(tiny_blip2, manifest, tmp_path / "a.jsonl"))


@pytest.mark.parametrize("kind", [*DAMAGE_KINDS, "12000x12000"])
def test_cli_names_each_unreadable_image_and_its_record(tiny_blip2, manifest, tmp_path, damage, kind) -> None:
    """Issue 27 items 1 and 9: `altcap caption` stops before loading the model, naming the file, its
    manifest line and the flag that skips it; no traceback, nothing written."""
    bad = manifest.parent / "imgs" / "im3.jpg"
    if kind == "12000x12000":
        write_png_header(bad, 12_000, 12_000)
    else:
        damage(bad, kind)
    out = tmp_path / "c.jsonl"
    args = ["caption", "--model-id", str(tiny_blip2), "--manifest", str(manifest), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert f"{bad}: " in text and f"listed at {manifest}:4" in text, text
    assert "skip_unreadable_images=true" in text and "Traceback" not in text
    assert not out.exists()


def test_skip_flag_captions_the_rest_and_counts(tiny_blip2, manifest, tmp_path, damage) -> None:
    damage(manifest.parent / "imgs" / "im3.jpg", "truncated")
    out = tmp_path / "a.jsonl"
    summary = run_caption(make_config(tiny_blip2, manifest, out, skip_unreadable_images=True))
    assert {r.image for r in read_captions(out)} == TEST_IMAGES - {"imgs/im3.jpg"}
    assert summary.unreadable_images == 1 and summary.written_images == 4
    [unreadable] = json.loads(provenance_path(out).read_text())["runs"][-1]["unreadable_images"]
    assert unreadable["code"] == "IMAGE_TRUNCATED" and unreadable["records"] == [f"{manifest}:4"]
    # evaluate then says why the image has no caption
    from altcap.metrics.config import EvaluateConfig
    from altcap.metrics.inputs import EvaluateInputError, load_inputs

    expected = r"1 of them were left out by `altcap caption` as unreadable"
    with pytest.raises(EvaluateInputError, match=expected):
        load_inputs(EvaluateConfig(refs=manifest, pred=[out]))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="exactly one of `manifest`"):
        CaptionConfig()
    with pytest.raises(ValueError, match="min_new_tokens=9 exceeds"):
        GenerationConfig(min_new_tokens=9, max_new_tokens=5)
    assert "temperature" not in GenerationConfig().generate_kwargs()
    assert GenerationConfig(do_sample=True, temperature=0.7).generate_kwargs()["temperature"] == 0.7


def test_every_flag_maps_to_one_field() -> None:
    fields = set(field_paths(CaptionConfig))
    assert set(FLAG_FIELDS.values()) <= fields
    params = set(inspect.signature(caption_command).parameters) - NOT_FLAGS
    assert params == set(FLAG_FIELDS)


@pytest.mark.slow
def test_cli_run_and_error(tiny_blip2, manifest, tmp_path) -> None:
    out = tmp_path / "cli.jsonl"
    args = [
        "caption",
        "--model-id",
        str(tiny_blip2),
        "--manifest",
        str(manifest),
        "--split",
        "test",
        "--out",
        str(out),
        "--num-beams",
        "2",
        "--max-new-tokens",
        "4",
        "--min-new-tokens",
        "2",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--set",
        "generation.no_repeat_ngram_size=0",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = read_captions(out)
    assert len(records) == 5 and records[0].generation["no_repeat_ngram_size"] == 0
    mixed = CliRunner().invoke(app, [*args[:-2], "--num-beams", "1"])
    assert mixed.exit_code == 2 and "must not be mixed" in mixed.output
    bad = CliRunner().invoke(
        app, ["caption", "--model-id", "x", "--images", str(tmp_path), "--set", "nope=1"]
    )
    assert bad.exit_code == 2 and "unknown key 'nope'" in bad.output


@pytest.mark.slow
def test_adapter_captions_are_recorded_and_not_mixed_with_base(tiny_blip2, manifest, tmp_path) -> None:

    from altcap.models.loading import apply_lora, load_model

    model, _, family = load_model(ModelConfig(model_id=str(tiny_blip2), device="cpu"))
    torch.manual_seed(0)
    tuned = apply_lora(model, family, None, r=4, alpha=8, dropout=0.0)
    for name, param in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=1.0)
    tuned.save_pretrained(tmp_path / "adapter")
    base_out, tuned_out = tmp_path / "base.jsonl", tmp_path / "tuned.jsonl"
    run_caption(make_config(tiny_blip2, manifest, base_out))
    adapter_model = ModelConfig(model_id=str(tiny_blip2), adapter=str(tmp_path / "adapter"), device="cpu")
    run_caption(make_config(tiny_blip2, manifest, tuned_out).model_copy(update={"model": adapter_model}))
    tuned_records = read_captions(tuned_out)
    assert {r.adapter for r in tuned_records} == {str(tmp_path / "adapter")}
    base = {r.image: r.caption for r in read_captions(base_out)}
    assert any(base[r.image] != r.caption for r in tuned_records)
    with pytest.raises(CaptionError, match="adapter"):
        run_caption(make_config(tiny_blip2, manifest, tuned_out))


@pytest.mark.slow
def test_static_cache_gives_the_dynamic_cache_captions(tiny_blip2, manifest, tmp_path) -> None:
    greedy = {"num_beams": 1, "no_repeat_ngram_size": 0}
    dynamic_out, static_out = tmp_path / "dynamic.jsonl", tmp_path / "static.jsonl"
    base = make_config(tiny_blip2, manifest, static_out)
    static = base.generation.model_copy(update={**greedy, "cache_implementation": "static"})
    run_caption(base.model_copy(update={"generation": static, "batch_size": 3}))  # short batches get padded
    dynamic = base.generation.model_copy(update=greedy)
    run_caption(make_config(tiny_blip2, manifest, dynamic_out, generation=dynamic))
    static_records = read_captions(static_out)
    assert len(static_records) == 5  # the padded copies are not written
    assert {r.image: r.caption for r in static_records} == {
        r.image: r.caption for r in read_captions(dynamic_out)
    }
    assert "cache_implementation" not in static_records[0].generation  # speed only: not a resume guard
    assert static.generate_kwargs()["cache_implementation"] == "static"


def test_speed_fields_reach_generate_and_stay_out_of_records(tiny_blip2, manifest, tmp_path) -> None:
    generation = GenerationConfig(
        cache_implementation="static", disable_compile=True, min_new_tokens=3, max_new_tokens=3
    )
    cfg = make_config(tiny_blip2, manifest, tmp_path / "out.jsonl", generation=generation, batch_size=4)
    model, processor, family = load_model(cfg.model)
    seen: list[tuple[int, dict]] = []

    def spy(model, processor, inputs, kwargs):
        seen.append((inputs["input_ids"].shape[0], kwargs))
        return family.generate(model, processor, inputs, kwargs)

    items = order_for_throughput(collect_items(cfg))
    written = caption_module.caption_items(
        model, processor, replace(family, generate=spy), items, cfg, progress=False
    )
    # 4 images with the default prompt, 1 with its own: the second batch is padded to 4 rows.
    assert written == 5 and [rows for rows, _ in seen] == [4, 4]
    assert all(k["cache_implementation"] == "static" and k["disable_compile"] for _, k in seen)
    assert "disable_compile" not in cfg.record_settings()
    assert "cache_implementation" not in GenerationConfig().generate_kwargs()  # default kwargs unchanged


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_worker_processes_give_the_same_captions(tiny_blip2, manifest, tmp_path, num_workers) -> None:
    reference = tmp_path / "thread.jsonl"
    run_caption(make_config(tiny_blip2, manifest, reference, num_workers=0))
    out = tmp_path / f"workers{num_workers}.jsonl"
    run_caption(make_config(tiny_blip2, manifest, out, num_workers=num_workers, batch_size=2))
    expected = {r.image: r.caption for r in read_captions(reference)}
    assert {r.image: r.caption for r in read_captions(out)} == expected and len(expected) == 5


def test_cuda_graphs_refusals_name_the_fix_and_write_nothing(tiny_blip2, manifest, tmp_path) -> None:
    graphs = GenerationConfig(num_beams=2, max_new_tokens=5, min_new_tokens=5, cuda_graphs=True)
    out = tmp_path / "graphs.jsonl"
    # The tiny BLIP-2 here has an OPT LM: no encoder-decoder to replay.
    with pytest.raises(CaptionError, match=r"decoder-only .*drop generation\.cuda_graphs"):
        run_caption(make_config(tiny_blip2, manifest, out, generation=graphs))
    assert not out.exists() and not provenance_path(out).exists()
    with pytest.raises(ValueError, match="cache_implementation unset"):
        GenerationConfig(cuda_graphs=True, cache_implementation="static")


def test_images_folder_of_phone_formats(tiny_blip2, tmp_path) -> None:
    """Issue 27 item 10b: `caption --images` finds and reads HEIC, WebP and AVIF."""
    photos = write_phone_photos(tmp_path / "phone")
    generation = GenerationConfig(num_beams=1, max_new_tokens=3, min_new_tokens=1)
    model = ModelConfig(model_id=str(tiny_blip2), device="cpu")
    out = tmp_path / "p.jsonl"
    cfg = CaptionConfig(model=model, images=tmp_path / "phone", out=out, generation=generation)
    assert run_caption(cfg).written_images == 3
    assert sorted(r.image for r in read_captions(tmp_path / "p.jsonl")) == sorted(p.name for p in photos)
