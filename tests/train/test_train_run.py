import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_fixtures import make_config, read_log, write_manifest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.models.loading import ModelConfig, load_model
from altcap.train.data import load_rgb, read_split_examples
from altcap.train.run import run_train

FAMILIES = [("blip", None), ("blip2", "opt"), ("blip2", "t5"), ("instructblip", None), ("llava_next", None)]
# One family trains in the fast lane (the loop's smoke test); the rest are slow (~8 s CPU each).
FAMILY_PARAMS = [
    pair if pair == ("blip2", "opt") else pytest.param(*pair, marks=pytest.mark.slow) for pair in FAMILIES
]


@pytest.mark.parametrize(("family", "variant"), FAMILY_PARAMS)
def test_every_family_trains_two_steps(family: str, variant: str | None, tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=2)
    out = tmp_path / "run"
    run_train(make_config(tiny_model(family, variant), manifest, out, "max_steps=2"))
    rows = read_log(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows) and "val_loss" in rows[-1]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["family"] == family and provenance["final_step"] == 2
    assert provenance["device"] == "1 x cpu" and provenance["wall_time_s"] > 0
    check_phase_seconds(provenance)


def check_phase_seconds(provenance: dict) -> None:
    """Every phase timed once, none negative, all within the run's wall time (rounding aside)."""
    phases = provenance["phase_seconds"]
    cache_phases = {"cache_fingerprint", "cache_encode", "cache_encode.keys", "cache_encode.first_batch"}
    cached = cache_phases if provenance["feature_cache_used"] else set()
    assert set(phases) == {"validate", "load", "prepare", "fit", "outputs"} | cached
    assert all(seconds >= 0 for seconds in phases.values()) and phases["fit"] > 0
    # "phase.part" entries are parts of their phase, inside its time.
    assert sum(s for name, s in phases.items() if "." not in name) <= provenance["wall_time_s"] + 0.01
    if cached:
        assert phases["cache_encode.keys"] + phases["cache_encode.first_batch"] <= phases["cache_encode"]


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=0)
    out = tmp_path / "run"
    cfg = make_config(
        tiny_model("blip"),
        manifest,
        out,
        "epochs=8",
        "batch_size=4",
        "grad_accum_steps=1",
        "optim.lr=2e-2",
        "lora.target_modules=[query,key,value,dense,decoder]",
        "schedule.warmup_steps=0",
        "lora.dropout=0",
        "data.val_split=null",
    )
    run_train(cfg)
    losses = [r["loss"] for r in read_log(out)]
    assert len(losses) == 8 and losses[-1] < losses[0] - 1.0


EXPECTED_FILES = {
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
    "adapter/README.md",
    "best/adapter_config.json",
    "best/adapter_model.safetensors",
    "best/README.md",
    "checkpoints/step-2/trainable.safetensors",
    "checkpoints/step-2/optimizer.pt",
    "checkpoints/step-2/scheduler.pt",
    "checkpoints/step-2/rng.pt",
    "checkpoints/step-2/state.json",
    "config.yaml",
    "provenance.json",
    "train_log.jsonl",
    "loss_curves.png",
}


@pytest.mark.slow
def test_cli_writes_exactly_the_expected_files(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=2)
    out = tmp_path / "run"
    args = [
        "train",
        "--model-id",
        str(tiny_model("blip")),
        "--manifest",
        str(manifest),
        "--output-dir",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--lora-r",
        "4",
        "--report-to",
        "tensorboard",
        "--precision",
        "fp32",
        "--set",
        "save_every_n_steps=100",
        "--set",
        "grad_accum_steps=1",
        "--set",
        f"feature_cache.dir={tmp_path / 'cache'}",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {f for f in files if not f.startswith("tensorboard/")} == EXPECTED_FILES
    assert any(f.startswith("tensorboard/") and "tfevents" in f for f in files)
    provenance = json.loads((out / "provenance.json").read_text())
    assert len(provenance["manifest_sha256"]) == 64 and provenance["versions"]["peft"]
    assert "lora:\n  r: 4" in (out / "config.yaml").read_text()


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--set", "lora.rank=3"])
    assert result.exit_code == 2
    assert "unknown key 'lora.rank'" in result.output


@pytest.mark.slow
def test_saved_adapter_reloads_with_identical_outputs(tiny_model, tmp_path: Path) -> None:
    model_dir = tiny_model("blip2", "opt")
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=0)
    out = tmp_path / "run"
    # fp32 on every device: merging into a bf16 base rounds the weights by more than the 1e-5 checked.
    sets = ("max_steps=3", "grad_accum_steps=1", "optim.lr=1e-2", "merge=true", "precision=fp32")
    run_train(make_config(model_dir, manifest, out, *sets))
    examples = read_split_examples(manifest, "train", None)
    model, processor, family = load_model(
        ModelConfig(device="cpu", model_id=str(model_dir), adapter=str(out / "adapter"))
    )
    base, _, _ = load_model(ModelConfig(device="cpu", model_id=str(model_dir)))
    merged, _, _ = load_model(ModelConfig(device="cpu", model_id=str(out / "merged")))
    images = [load_rgb(e.image) for e in examples]
    inputs = family.build_inputs(processor, images, None, [e.caption for e in examples])
    with torch.no_grad():
        adapted, plain, folded = (m(**inputs).loss for m in (model, base, merged))
    assert adapted != plain  # the adapter changed the model
    assert abs(adapted.item() - folded.item()) < 1e-5
    state = json.loads((out / "checkpoints" / "step-3" / "state.json").read_text())
    assert state["global_step"] == 3
    # The reloaded adapter equals the weights the run ended with (from its final checkpoint).
    from safetensors.torch import load_file

    trained = load_file(str(out / "checkpoints" / "step-3" / "trainable.safetensors"))
    reloaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert len(trained) == len(reloaded) > 0
    for name, tensor in trained.items():
        key = name.removeprefix("model.").replace(".default.", ".default.")
        assert torch.equal(reloaded[key], tensor), name


@pytest.mark.slow
def test_gradient_checkpointing_and_qformer_lora_train(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=0)
    out = tmp_path / "run"
    sets = ("max_steps=2", "gradient_checkpointing=true", "lora.include_qformer=true")
    run_train(make_config(tiny_model("blip2", "opt"), manifest, out, *sets))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["feature_cache_used"] is False  # a trained Q-Former cannot be cached
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert "query" in adapter_config["target_modules"] and "q_proj" in adapter_config["target_modules"]


@pytest.mark.slow
def test_two_processes_through_accelerate(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=2)
    out = tmp_path / "run"
    # torchrun + ACCELERATE_USE_CPU is how accelerate runs several CPU processes (gloo); on GPUs the
    # same command runs under `accelerate launch --config_file configs/accelerate/ddp.yaml`.
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "altcap.cli",
        "train",
    ]
    command += ["--model-id", str(tiny_model("blip")), "--manifest", str(manifest), "--output-dir", str(out)]
    command += ["--epochs", "2", "--batch-size", "2", "--lora-r", "4", "--report-to", "none"]
    command += ["--set", "grad_accum_steps=1", "--set", "log_every_n_steps=1"]
    command += ["--set", f"feature_cache.dir={tmp_path / 'cache'}"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_log(out)
    # 8 examples sharded over 2 processes x batch 2 = 2 steps per epoch; rows written once (main process).
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_length_grouped_run_logs_tokens_and_pads_less(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=0, captions_per_image=2)
    padded = {}
    for grouped in (False, True):
        out = tmp_path / f"run-{grouped}"
        sets = ("epochs=2", "grad_accum_steps=1", "batch_size=4", f"group_by_length={str(grouped).lower()}")
        run_train(make_config(tiny_model("blip"), manifest, out, *sets))
        rows = read_log(out)
        assert sum(r["samples"] for r in rows) == 2 * 16  # two epochs of 8 images x 2 captions
        assert all(0 < r["caption_tokens"] <= r["padded_tokens"] for r in rows)
        padded[grouped] = sum(r["padded_tokens"] for r in rows)
    assert padded[True] < padded[False]
