"""Every shipped chat-VLM LoRA recipe loads through the config loader and names a registered family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from altcap.config import load_config
from altcap.models.registry import list_families
from altcap.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "altcap" / "configs"
RECIPES = {
    "qwen2.5-vl-3b-instruct-lora.yaml": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen3-vl-4b-instruct-lora.yaml": "Qwen/Qwen3-VL-4B-Instruct",
    "smolvlm2-2.2b-instruct-lora.yaml": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "gemma-3-4b-it-lora.yaml": "google/gemma-3-4b-it",
    "paligemma2-3b-pt-224-lora.yaml": "google/paligemma2-3b-pt-224",
}


@pytest.mark.parametrize(("name", "model_id"), sorted(RECIPES.items()))
def test_recipe_loads_with_its_hub_id_and_family(name: str, model_id: str) -> None:
    path = CONFIGS / name
    cfg = load_config(TrainConfig, path)
    assert cfg.model.model_id == model_id
    assert cfg.model.family in list_families()
    assert not cfg.model.trust_remote_code
    header = path.read_text(encoding="utf-8").split("\nmodel:")[0]
    assert f"altcap train src/altcap/configs/{name}" in header
    measured = read_recipe_memory()[name]
    assert f"{measured['peak_allocated_gb']} GB allocated" in header, "the header states the measured peak"
    assert f"batch {measured['settings']['batch_size']}," in header and "recipe-memory-h100.json" in header


def read_recipe_memory() -> dict[str, dict]:
    """Recipe file name -> its row in the GPU measurement (benchmarks/recipe_memory.py)."""
    result = CONFIGS.parents[2] / "benchmarks" / "results" / "recipe-memory-h100.json"
    rows = json.loads(result.read_text(encoding="utf-8"))["recipes"]
    return {row["recipe"]: row for row in rows.values()}


def test_every_shipped_yaml_loads_as_some_stage_config() -> None:
    recipes = [p for p in CONFIGS.glob("*-lora.yaml")]
    assert len(recipes) >= 9
    for path in recipes:
        load_config(TrainConfig, path)
