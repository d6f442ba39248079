import importlib.util
import json
from pathlib import Path

import pytest
from train_fixtures import make_config, write_manifest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.config import ConfigError
from altcap.train.run import run_train
from altcap.train.validate import validate_train_config
from image_damage import DAMAGE_KINDS, write_phone_photos, write_png_header


def test_every_problem_is_reported_at_once(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=0, n_val=2)
    cfg = make_config(
        tiny_model("blip2", "opt"),
        manifest,
        tmp_path / "run",
        "lora.target_modules=[qkv_typo]",
        "report_to=wandb",
        "resume=true",
    )
    with pytest.raises(ConfigError) as err:
        validate_train_config(cfg)
    problems = err.value.problems
    text = "\n".join(problems)
    assert f"{manifest}: no training records (with captions) in split 'train'; splits present: val" in text
    assert "lora.target_modules=['qkv_typo']" in text and "q_proj" in text  # lists the real layer names
    if importlib.util.find_spec("wandb") is None:
        assert "report_to='wandb' but the 'wandb' package is not installed; run `pip install wandb`" in text
    assert "resume=true" in text
    assert len(problems) >= 3


def test_unknown_model_folder_and_family(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    cfg = make_config(tmp_path / "no-such-model", manifest, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"model: model_id=.*no-such-model.*folder not found"):
        validate_train_config(cfg)


def test_unsupported_family_is_named(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    cfg = make_config(tiny_model("blip"), manifest, tmp_path / "run", "model.family=gpt2")
    with pytest.raises(ConfigError, match=r"family='gpt2' is not supported; supported families: .*blip2"):
        validate_train_config(cfg)


def test_unreadable_and_missing_images_fail_before_loading(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=3, n_val=0)
    (tmp_path / "data" / "images" / "0.png").write_bytes(b"not a png")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows.append({"image": "images/missing.jpg", "captions": ["a cat"], "split": "train"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_config(tiny_model("blip"), manifest, tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        run_train(cfg)
    text = str(err.value)
    assert "0.png: not an image Pillow can decode" in text and "missing.jpg" in text
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_qlora_without_gpu_is_a_clear_error(tiny_model, tmp_path: Path) -> None:
    cfg = make_config(tiny_model("blip"), write_manifest(tmp_path / "data"), tmp_path / "run", "qlora=true")
    with pytest.raises(ConfigError, match="qlora=true needs a CUDA GPU"):
        validate_train_config(cfg)


def test_cuda_graphs_without_gpu_or_on_a_family_without_them_are_clear_errors(tiny_model, tmp_path) -> None:
    manifest = write_manifest(tmp_path / "data")
    cfg = make_config(tiny_model("blip"), manifest, tmp_path / "run", "cuda_graphs=true")
    with pytest.raises(ConfigError) as err:
        validate_train_config(cfg)
    assert "cuda_graphs=true needs a CUDA GPU; none found. Set cuda_graphs=false" in err.value.problems
    assert any(
        "cuda_graphs=true: family 'blip' cannot replay its training passes" in p and "smolvlm" in p
        for p in err.value.problems
    )


def test_cli_cuda_graphs_flag_on_a_cpu_machine_says_what_to_set(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    args = ["train", "--model-id", str(tiny_model("blip")), "--manifest", str(manifest), "--cuda-graphs"]
    result = CliRunner().invoke(app, [*args, "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "cuda_graphs=true needs a CUDA GPU; none found. Set cuda_graphs=false" in text
    assert "Traceback" not in text


def test_missing_manifest_setting(tiny_model, tmp_path: Path) -> None:
    cfg = make_config(tiny_model("blip"), tmp_path / "m.jsonl", tmp_path / "run", "data.manifest=null")
    with pytest.raises(ConfigError, match=r"data\.manifest is not set"):
        validate_train_config(cfg)


@pytest.mark.parametrize("kind", [*DAMAGE_KINDS, "12000x12000"])
def test_cli_names_each_unreadable_image_and_its_record(tiny_model, tmp_path: Path, damage, kind) -> None:
    """Issue 27 items 1 and 9: every kind of damage stops `altcap train` before the model loads, with
    the file, its manifest line and the flag that skips it; no traceback."""
    manifest = write_manifest(tmp_path / "data", n_train=3, n_val=1)
    bad = tmp_path / "data" / "images" / "1.png"
    if kind == "12000x12000":
        write_png_header(bad, 12_000, 12_000)
    else:
        damage(bad, kind)
    args = ["train", "--model-id", str(tiny_model("blip")), "--manifest", str(manifest)]
    result = CliRunner().invoke(app, [*args, "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert f"{bad}: " in text and f"listed at {manifest}:2" in text, text
    assert "data.skip_unreadable_images=true" in text and "Traceback" not in text
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


@pytest.mark.slow
def test_skip_flag_leaves_out_and_counts_and_resume_screens_again(tiny_model, tmp_path: Path, damage) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=1)
    damage(tmp_path / "data" / "images" / "1.png", "truncated")
    run = tmp_path / "run"
    sets = ["data.skip_unreadable_images=true", "max_steps=1", "epochs=1", "grad_accum_steps=1"]
    run_train(make_config(tiny_model("blip"), manifest, run, *sets))
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["train_examples"] == 3
    [skipped] = provenance["unreadable_images_skipped"]
    assert skipped["code"] == "IMAGE_TRUNCATED" and skipped["records"] == [f"{manifest}:2"]
    # Resuming screens again: an image damaged since is named, not met later in a worker.
    damage(tmp_path / "data" / "images" / "2.png", "not_an_image")
    with pytest.raises(ConfigError, match=r"2\.png: not an image Pillow can decode"):
        run_train(make_config(tiny_model("blip"), manifest, run, "max_steps=2", "epochs=1"))


def test_phone_formats_pass_validation_and_reach_the_processor(tiny_model, tmp_path: Path) -> None:
    """Issue 27 item 10b: HEIC, WebP and AVIF train like any image (screened, then a first batch)."""
    photos = write_phone_photos(tmp_path / "data" / "images")
    rows = [{"image": f"images/{p.name}", "captions": ["a cat"], "split": "train"} for p in photos]
    manifest = tmp_path / "data" / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = validate_train_config(make_config(tiny_model("blip"), manifest, tmp_path / "run", "batch_size=3"))
    assert [e.image.suffix for e in plan.train_examples] == [".heic", ".webp", ".avif"]
    assert not plan.unreadable_images
