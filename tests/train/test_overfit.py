import json
from pathlib import Path

import pytest
from train_fixtures import CAPTIONS, make_config, write_manifest

from altcap.models.loading import ModelConfig, load_model
from altcap.train.data import load_rgb
from altcap.train.run import run_train


@pytest.mark.slow
def test_overfits_eight_examples_until_greedy_decoding_reproduces_them(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=8, n_val=0)
    model_dir = tiny_model("blip")
    cfg = make_config(
        model_dir,
        manifest,
        tmp_path / "run",
        "epochs=80",
        "batch_size=8",
        "grad_accum_steps=1",
        "optim.lr=2e-2",
        "lora.r=32",
        "lora.alpha=32",
        "lora.dropout=0",
        "schedule.warmup_steps=0",
        "lora.target_modules=[query,key,value,dense,decoder]",
        "data.val_split=null",
        "save_every_n_steps=1000",
        "log_every_n_steps=20",
    )
    run_train(cfg)
    model, processor, family = load_model(
        ModelConfig(device="cpu", model_id=str(model_dir), adapter=str(cfg.output_dir / "adapter"))
    )
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    images = [load_rgb(manifest.parent / r["image"]) for r in records]
    inputs = family.build_inputs(processor, images, None, None)
    captions = family.generate(
        model, processor, inputs, {"max_new_tokens": 40, "do_sample": False, "num_beams": 1}
    )
    assert captions == list(CAPTIONS)
