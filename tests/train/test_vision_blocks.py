"""`train_vision_blocks`: the last vision blocks train in full, are saved with the adapter, and reload."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import make_config, write_manifest

from altcap.config import ConfigError
from altcap.models.loading import ModelConfig, load_model
from altcap.train.run import run_train


@pytest.fixture(scope="module")
def tiny_mini(tiny_altcap_mini_dir: Path) -> Path:
    return tiny_altcap_mini_dir


@pytest.mark.slow
def test_last_vision_blocks_train_and_travel_with_the_adapter(tiny_mini: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=0)
    out = tmp_path / "run"
    run_train(make_config(tiny_mini, manifest, out, "max_steps=2", "train_vision_blocks=1", "optim.lr=5e-2"))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["feature_cache_used"] is False  # a trained tower cannot be cached
    saved = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    base, _, _ = load_model(ModelConfig(model_id=str(tiny_mini), device="cpu"))
    last = len(base.vision._blocks) - 1
    head = [k for k in saved if "vision._conv_head" in k]
    block = [k for k in saved if f"vision._blocks.{last}." in k]
    assert head and block and not any(f"vision._blocks.{last - 1}." in k for k in saved)
    # The trained head differs from the base head, and the adapter brings it back on load.
    trained_head = saved[head[0]]
    assert not torch.equal(trained_head, base.vision._conv_head.weight.to(trained_head.dtype))
    reloaded, _, _ = load_model(
        ModelConfig(model_id=str(tiny_mini), device="cpu", adapter=str(out / "adapter"))
    )
    weights = dict(reloaded.named_parameters())
    match = [n for n in weights if "vision._conv_head" in n and "modules_to_save" in n]
    assert match and torch.equal(weights[match[0]].to(trained_head.dtype), trained_head)


def test_families_without_vision_blocks_and_forced_cache_are_refused(
    tiny_model, tiny_mini, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    with pytest.raises(ConfigError, match="train_vision_blocks=2: family 'blip' cannot train vision"):
        run_train(make_config(tiny_model("blip"), manifest, tmp_path / "a", "train_vision_blocks=2"))
    with pytest.raises(ConfigError, match=r"feature_cache\.enabled=false"):
        run_train(
            make_config(
                tiny_mini, manifest, tmp_path / "b", "train_vision_blocks=1", "feature_cache.enabled=true"
            )
        )
