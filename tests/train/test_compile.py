"""`compile=true` (torch.compile of the loss module): same losses, checkpoints, resume and adapter.

Tolerance: the runs are fp32 with the same seed and, with `fallback_random`, the same dropout
masks, so the only difference is the order of floating-point operations in the compiled kernels:
about 1e-7 relative here. rel=1e-4 allows for that on any CPU, while a step that did not train the
LoRA weights, or trained different ones, moves the losses of later steps far more than 1e-4.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from train_fixtures import make_config, read_log, write_manifest

from altcap.train.checkpoint import find_latest_checkpoint
from altcap.train.run import run_train

# A constant learning rate, so a run stopped by max_steps and resumed follows the same schedule.
SETS = ("feature_cache.enabled=true", "schedule.name=constant_with_warmup", "schedule.warmup_steps=0")


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Inductor draws dropout masks from torch's own RNG, and compiled graphs do not outlive a test."""
    import torch._dynamo
    import torch._inductor.config

    # Inductor's own RNG would give other dropout masks than eager, so losses could not be compared.
    # config.patch, not monkeypatch: undoing a monkeypatch deletes the key from inductor's config module.
    with torch._inductor.config.patch(fallback_random=True):
        torch._dynamo.reset()
        yield
        torch._dynamo.reset()


def assert_same_losses(rows: list[dict], reference: list[dict]) -> None:
    """Every logged step and loss matches the reference within the module's tolerance."""
    assert [r["step"] for r in rows] == [r["step"] for r in reference]
    for row, ref in zip(rows, reference, strict=True):
        assert row["loss"] == pytest.approx(ref["loss"], rel=1e-4), row
        assert ("val_loss" in row) == ("val_loss" in ref), row
        if "val_loss" in ref:
            assert row["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4), row


def read_trainable(output_dir: Path) -> dict[str, torch.Tensor]:
    """The trainable weights of a run's last checkpoint."""
    return load_file(str(find_latest_checkpoint(output_dir) / "trainable.safetensors"))


@pytest.mark.slow
def test_compiled_run_matches_eager_and_resumes(tiny_model, tmp_path: Path) -> None:
    # aot_eager: dynamo + AOTAutograd trace the same forward and backward graphs as inductor in
    # seconds; inductor's kernel generation is covered by the slow test below.
    model_dir = tiny_model("blip2", "t5")
    manifest = write_manifest(tmp_path / "data")
    eager = make_config(model_dir, manifest, tmp_path / "eager", *SETS)
    run_train(eager)

    compiled_sets = (*SETS, "compile=true", "compile_backend=aot_eager")
    stopped = make_config(model_dir, manifest, tmp_path / "compiled", *compiled_sets, "max_steps=2")
    run_train(stopped)
    assert find_latest_checkpoint(stopped.output_dir).name == "step-2"
    resumed = make_config(model_dir, manifest, tmp_path / "compiled", *compiled_sets, "resume=true")
    run_train(resumed)

    assert len(read_log(eager.output_dir)) == 4
    assert_same_losses(read_log(resumed.output_dir), read_log(eager.output_dir))
    # Compiled in place: the checkpoint has the uncompiled parameter names (no `_orig_mod.`).
    weights, reference = read_trainable(resumed.output_dir), read_trainable(eager.output_dir)
    assert sorted(weights) == sorted(reference)
    for name, tensor in reference.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-4, atol=1e-6)
    assert_adapter_reloads(model_dir, resumed.output_dir / "adapter", reference)


def assert_adapter_reloads(model_dir: Path, adapter: Path, reference: dict[str, torch.Tensor]) -> None:
    """The saved adapter loads onto the base model with the reference run's trained LoRA weights."""
    from peft import PeftModel
    from transformers import Blip2ForConditionalGeneration

    model = PeftModel.from_pretrained(Blip2ForConditionalGeneration.from_pretrained(model_dir), adapter)
    loaded = dict(model.named_parameters())
    lora_b = [name for name in reference if "lora_B" in name]
    assert lora_b, sorted(reference)
    for name in lora_b:
        # lora_B starts at zero, so a non-zero value proves the compiled steps trained it.
        assert reference[name].abs().sum() > 0, name
        torch.testing.assert_close(loaded[name.removeprefix("model.")], reference[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_inductor_compiled_steps_match_eager(tiny_model, tmp_path: Path) -> None:
    # The real backend: about 55 s on 2 CPU cores, nearly all of it generating and building the
    # C++ kernels of the first step's forward and backward.
    model_dir = tiny_model("blip2", "t5")
    manifest = write_manifest(tmp_path / "data")
    short = (*SETS, "max_steps=2", "data.val_split=null")
    eager = make_config(model_dir, manifest, tmp_path / "eager", *short)
    run_train(eager)
    compiled = make_config(model_dir, manifest, tmp_path / "inductor", *short, "compile=true")
    run_train(compiled)
    assert_same_losses(read_log(compiled.output_dir), read_log(eager.output_dir))
    assert (compiled.output_dir / "adapter" / "adapter_model.safetensors").is_file()


def deeper_t5_blip2(tiny_model, tmp_path: Path, layers: int = 3) -> Path:
    """The tiny BLIP-2 Flan-T5 with `layers` encoder and decoder blocks (the extra ones seeded random)."""
    import json
    import shutil

    folder = tmp_path / "deeper"
    shutil.copytree(tiny_model("blip2", "t5"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"].update(num_layers=layers, num_decoder_layers=layers)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.slow
def test_block_scope_compiles_each_trainable_layer_once_without_per_layer_recompiles(
    tiny_model, tmp_path: Path
) -> None:
    from torch._dynamo.utils import counters

    from altcap.models.loading import ModelConfig, apply_lora, load_model
    from altcap.train.compile import compile_for_training
    from altcap.train.config import TrainConfig
    from altcap.train.cross_entropy import CaptionLoss

    torch.manual_seed(0)
    model, processor, family = load_model(ModelConfig(model_id=str(deeper_t5_blip2(tiny_model, tmp_path))))
    model = apply_lora(model, family, None, 8, 8, 0.0).train()
    loss_module = CaptionLoss(model, family)
    cfg = TrainConfig.model_validate(
        {"data": {"manifest": tmp_path / "m.jsonl"}, "compile": True, "compile_backend": "aot_eager"}
    )
    # The 3 encoder + 3 decoder T5 blocks carry LoRA; the frozen vision and Q-Former layers stay eager.
    assert compile_for_training(loss_module, cfg) == 6
    compiled = [m for m in loss_module.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert {type(m).__name__ for m in compiled} == {"T5Block"}

    images = [Image.new("RGB", (32, 32), (40 * i, 90, 10)) for i in range(3)]
    captions = ["a red square on a wall", "blue", "two dogs run on the grass"]
    inputs = family.build_inputs(processor, images, ["Describe."] * 3, captions)
    with torch.no_grad():
        features = family.feature_cache.encode_images(model, inputs)
    counters.clear()
    for batch in (slice(0, 3), slice(0, 2)):  # a second batch size and caption length: no recompile
        sub_inputs = {k: v[batch] for k, v in inputs.items()}
        loss_module(sub_inputs, {k: v[batch] for k, v in features.items()}).backward()
    # One graph per distinct block: first and later blocks of the encoder and of the decoder. A KV
    # cache in the training forward once made every decoder layer a graph of its own.
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] <= 4, dict(counters["stats"])


@pytest.mark.slow
def test_compiled_layers_under_gradient_checkpointing_match_eager(tiny_model, tmp_path: Path) -> None:
    # Checkpointing re-runs each compiled layer in backward: the low-memory recipe must still work.
    model_dir = tiny_model("blip2", "t5")
    manifest = write_manifest(tmp_path / "data")
    short = (*SETS, "gradient_checkpointing=true", "max_steps=3", "data.val_split=null")
    eager = make_config(model_dir, manifest, tmp_path / "eager", *short)
    run_train(eager)
    compiled = make_config(model_dir, manifest, tmp_path / "compiled", *short, "compile=true",
                           "compile_backend=aot_eager")  # fmt: skip
    run_train(compiled)
    assert len(read_log(eager.output_dir)) == 3
    assert_same_losses(read_log(compiled.output_dir), read_log(eager.output_dir))


def test_block_scope_compiles_only_the_trainable_repeated_blocks() -> None:
    # nn.Module.compile is lazy (nothing is traced until a call), so this checks the choice of
    # modules in milliseconds; the slow tests above run what was compiled.
    from types import SimpleNamespace

    from altcap.train.compile import compile_for_training, repeated_blocks

    def make_block() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ModuleList([torch.nn.ReLU()]))

    def stack() -> torch.nn.ModuleList:
        return torch.nn.ModuleList(make_block() for _ in range(3))

    model = torch.nn.Module()
    model.frozen, model.trained, model.head = stack(), stack(), torch.nn.Linear(2, 2)
    model.frozen.requires_grad_(False)
    assert repeated_blocks(model) == [*model.frozen, *model.trained]  # inner lists are not searched
    cfg = SimpleNamespace(compile_backend="eager", compile_mode="default", compile_scope="blocks")
    assert compile_for_training(model, cfg) == 3
    assert all(block._compiled_call_impl is not None for block in model.trained)
    assert all(block._compiled_call_impl is None for block in model.frozen)
    assert model.head._compiled_call_impl is None
    whole = torch.nn.Linear(2, 2)
    assert compile_for_training(whole, SimpleNamespace(**{**vars(cfg), "compile_scope": "model"})) == 1
    assert whole._compiled_call_impl is not None
