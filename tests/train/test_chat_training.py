"""`altcap train` on a chat VLM: its vision feature cache, and LoRA on projector / vision tower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_fixtures import make_config, read_log, write_manifest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.config import ConfigError, load_config
from altcap.models.tiny_chat import build_tiny_chat_model
from altcap.train.config import TrainConfig
from altcap.train.run import run_train
from altcap.train.validate import lora_targets, validate_train_config


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model("qwen2_5_vl", tmp_path_factory.mktemp("qwen") / "model")


def test_cache_is_on_by_default_and_off_with_one_note_when_lora_adapts_the_projector(
    qwen: Path, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    assert validate_train_config(make_config(qwen, manifest, tmp_path / "a")).use_cache
    plan = validate_train_config(make_config(qwen, manifest, tmp_path / "b", "lora.adapt_projector=true"))
    assert not plan.use_cache
    assert [n for n in plan.notes if "feature cache" in n] == [
        "feature cache off: lora.adapt_projector trains part of what it would cache"
    ]


def test_a_prompt_longer_than_max_length_is_refused_before_the_weights_load(
    qwen: Path, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    cfg = make_config(qwen, manifest, tmp_path / "run", "model.max_length=20")
    with pytest.raises(ConfigError, match=r"image \+ prompt take \d+ tokens but max_length=20"):
        validate_train_config(cfg)


def test_an_explicit_cache_with_a_trained_vision_tower_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"lora\.adapt_vision=true trains the vision part.*feature_cache"):
        load_config(TrainConfig, None, {}, ["lora.adapt_vision=true", "feature_cache.enabled=true"])


def test_lora_targets_add_the_projector_by_full_name(qwen: Path, tmp_path: Path) -> None:
    from altcap.models.loading import load_model

    cfg = make_config(qwen, tmp_path / "m.jsonl", tmp_path / "run", "lora.adapt_projector=true")
    model, _, family = load_model(cfg.model)
    targets, scope = lora_targets(cfg, family, model)
    assert scope == ""
    assert any(".visual.merger." in t for t in targets)
    assert not any(".visual.blocks." in t for t in targets)
    assert all(".language_model." in t for t in targets if ".visual." not in t)


def test_a_family_without_projector_lora_is_an_error_naming_the_field(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    cfg = make_config(tiny_model("blip"), manifest, tmp_path / "run", "lora.adapt_vision=true")
    with pytest.raises(ConfigError, match=r"lora\.adapt_vision=true: family 'blip' has no projector"):
        validate_train_config(cfg)


@pytest.mark.slow  # two 2-epoch runs of a tiny Qwen2.5-VL
def test_training_from_the_vision_cache_gives_the_same_loss_curve(qwen: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=6, n_val=2, captions_per_image=2)
    runs = {}
    for enabled in ("true", "false"):
        out = tmp_path / f"cache-{enabled}"
        sets = (f"feature_cache.enabled={enabled}", "optim.lr=5e-3", "eval_every_n_steps=2")
        run_train(make_config(qwen, manifest, out, *sets, f"feature_cache.dir={tmp_path / 'features'}"))
        runs[enabled] = read_log(out)
        provenance = json.loads((out / "provenance.json").read_text())
        assert provenance["feature_cache_used"] is (enabled == "true")
    assert len(runs["true"]) == 6 and "val_loss" in runs["true"][1]
    for cached, direct in zip(runs["true"], runs["false"], strict=True):
        assert cached["step"] == direct["step"]
        assert cached["loss"] == pytest.approx(direct["loss"], abs=1e-5)
        assert cached.get("val_loss", 0.0) == pytest.approx(direct.get("val_loss", 0.0), abs=1e-5)
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 8  # one per image


@pytest.mark.slow  # one epoch through the CLI
def test_cli_flag_adapts_the_projector_and_turns_the_cache_off(qwen: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", "--model-id", str(qwen), "--manifest", str(manifest), "--output-dir", str(run),
         "--epochs", "1", "--batch-size", "2", "--lora-r", "4", "--report-to", "none",
         "--adapt-projector", "--set", "grad_accum_steps=1", "--set", "schedule.warmup_steps=0",
         "--set", f"feature_cache.dir={tmp_path / 'features'}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["config"]["lora"]["adapt_projector"] is True
    assert provenance["feature_cache_used"] is False
    assert "visual\\.merger" in provenance["lora_targets"]  # full names, in PEFT's regex
    from safetensors.torch import load_file

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    merger = [name for name in weights if ".visual.merger." in name and "lora_B" in name]
    assert merger and any(weights[name].abs().sum() > 0 for name in merger)  # trained, not just wrapped
    assert not (tmp_path / "features").exists()


def test_released_vision_tower_is_not_needed_to_train_from_the_cache(qwen: Path) -> None:
    from types import SimpleNamespace

    from PIL import Image

    from altcap.models.loading import ModelConfig, apply_lora, load_model
    from altcap.train.frozen import find_frozen_part, release_frozen_modules

    model, processor, family = load_model(ModelConfig(model_id=str(qwen), device="cpu"))
    model = apply_lora(model, family, None, 4, 4, 0.0).eval()
    images = [Image.new("RGB", (40, 30), (30 * i, 90, 10)) for i in range(2)]
    cache = family.feature_cache
    features = cache.encode_images(model, family.build_inputs(processor, images, None))
    text = family.build_inputs(processor, images, None, ["a dog on grass", "a red car"], with_pixels=False)
    before = cache.forward_from_features(model, features, text)
    plan, cfg = SimpleNamespace(family=family), SimpleNamespace(merge=False)
    assert release_frozen_modules(cfg, plan, model, SimpleNamespace(num_processes=1))
    tower = find_frozen_part(model, cache.frozen_modules[0])
    assert all(p.device.type == "meta" for p in tower.parameters())
    assert torch.allclose(cache.forward_from_features(model, features, text), before)


def test_a_transformers_without_the_seam_turns_the_default_cache_off_and_refuses_an_asked_one(
    qwen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import altcap.models.chat_features as chat_features

    monkeypatch.setattr(chat_features, "describe_missing_seam", lambda cls: f"{cls.__name__}: too old")
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    plan = validate_train_config(make_config(qwen, manifest, tmp_path / "a"))
    assert not plan.use_cache
    assert "feature cache off: Qwen2_5_VLForConditionalGeneration: too old" in plan.notes
    with pytest.raises(ConfigError, match="feature cache off: Qwen2_5_VLForConditionalGeneration: too old"):
        validate_train_config(make_config(qwen, manifest, tmp_path / "b", "feature_cache.enabled=true"))
    plan = validate_train_config(make_config(qwen, manifest, tmp_path / "c", "feature_cache.enabled=false"))
    assert not [note for note in plan.notes if "too old" in note]


def test_lean_activations_train_the_same_loss_curve_in_a_run(
    qwen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import altcap.train.run as train_run

    swapped = []
    make_lean = train_run.make_activations_lean
    monkeypatch.setattr(train_run, "make_activations_lean", lambda model: swapped.append(make_lean(model)))
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=0)
    runs = {}
    for lean in ("true", "false"):
        out = tmp_path / f"lean-{lean}"
        run_train(make_config(qwen, manifest, out, f"lean_activations={lean}", "optim.lr=5e-3"))
        runs[lean] = read_log(out)
    # Only the lean run swapped: the MLPs of the 2 text layers and the 1 vision block (fp32 on the
    # CPU, so no norm: each keeps nothing beyond its input there).
    assert [(counts.gated_mlps, counts.norms) for counts in swapped] == [(3, 0)]
    assert [row["loss"] for row in runs["true"]] == [row["loss"] for row in runs["false"]]


def test_training_graphs_give_the_eager_loss_curve_and_are_counted(
    qwen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cuda_graphs=true` through `run_train`, with the graphs replayed eagerly (the capture itself
    is tested on the GPU machine, tests/models/test_graphed_chat_training.py)."""
    import altcap.train.run as train_run
    import altcap.train.validate as validate
    from altcap.models.graphed_chat_training import enable_graphed_training

    monkeypatch.setattr(validate, "cuda_available", lambda: True)  # the CPU stands in for the GPU
    monkeypatch.setattr(
        train_run, "enable_graphed_training", lambda plan, model: enable_graphed_training(model, False)
    )
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=0)
    runs, provenance = {}, {}
    for graphs in ("true", "false"):
        out = tmp_path / f"graphs-{graphs}"
        sets = (f"cuda_graphs={graphs}", "precision=fp32", "optim.lr=5e-3")
        run_train(make_config(qwen, manifest, out, *sets))
        runs[graphs] = [row["loss"] for row in read_log(out)]
        provenance[graphs] = json.loads((out / "provenance.json").read_text())["cuda_graphs"]
    assert runs["true"] == pytest.approx(runs["false"], abs=1e-5)
    assert provenance["false"] is None
    # 4 examples in batches of 2, 2 epochs: 4 passes of one padded shape, the first one eager
    assert provenance["true"] == {
        "graphed_passes": 3,
        "eager_passes": 1,
        "shapes_captured": 1,
        "not_graphed_because": [],
    }
