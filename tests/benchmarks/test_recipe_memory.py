"""recipe_memory: every shipped chat recipe is found and measured through `run_train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import recipe_memory
from benchmarks.chat_configs import CHAT_ARCHS


@pytest.mark.parametrize("name", CHAT_ARCHS)
def test_every_architecture_has_its_shipped_recipe(name: str) -> None:
    from altcap.config import load_config
    from altcap.train.config import TrainConfig

    recipe = recipe_memory.find_recipe(name)
    sets = recipe_memory.build_sets(Path("/m"), Path("/d.jsonl"), Path("/o"), 3, tiny=False)
    cfg = load_config(TrainConfig, recipe, {}, sets)
    # The recipe's own memory settings survive; only the model, data and run length are replaced.
    assert str(cfg.model.model_id) == "/m" and cfg.max_steps == 3
    assert cfg.batch_size == 8 and cfg.precision == "bf16" and cfg.gradient_checkpointing is False


def test_unknown_recipe_names_the_recipes_folder() -> None:
    with pytest.raises(FileNotFoundError, match="no shipped recipe for nope"):
        recipe_memory.find_recipe("nope")


@pytest.mark.slow
def test_tiny_run_reports_a_recipe_with_its_settings(tmp_path: Path) -> None:
    out = recipe_memory.main(
        ["--tiny", "--steps", "1", "--recipes", "paligemma2-3b-pt-224", "--out", str(tmp_path / "r.json")]
    )
    report = json.loads(out.read_text())
    result = report["recipes"]["paligemma2-3b-pt-224"]
    assert "error" not in result, result
    assert result["settings"]["lora_r"] == 8 and result["settings"]["max_length"] == 512
    assert result["logged_steps"] == 1 and result["samples_per_s"] > 0
    # 256 image tokens + "caption en" + a 20-30 word caption.
    assert 256 + 20 < result["mean_padded_length"] < 256 + 45
    assert report["hardware"] and report["versions"]
