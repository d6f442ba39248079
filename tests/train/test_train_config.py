import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from altcap.config import ConfigError, field_paths, load_config
from altcap.train.commands import FLAG_FIELDS
from altcap.train.config import TrainConfig

CONFIGS = Path(__file__).parents[2] / "src" / "altcap" / "configs"


def test_defaults_follow_issue_4() -> None:
    cfg = TrainConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (128, 128, 0.05)
    assert (cfg.optim.lr, cfg.schedule.name) == (3e-5, "cosine")
    assert (cfg.batch_size, cfg.grad_accum_steps, cfg.epochs, cfg.precision) == (32, 2, 4, "bf16")
    assert cfg.report_to == "tensorboard" and cfg.feature_cache.enabled is None


def _walk(cls: type[BaseModel], prefix: str = ""):
    for name, field in cls.model_fields.items():
        yield f"{prefix}{name}", field
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _walk(field.annotation, f"{prefix}{name}.")


def test_every_field_has_a_description() -> None:
    missing = [name for name, field in _walk(TrainConfig) if not field.description]
    assert missing == []


def test_every_cli_flag_maps_to_a_field() -> None:
    assert set(FLAG_FIELDS.values()) <= set(field_paths(TrainConfig))


def test_shipped_recipe_loads() -> None:
    cfg = load_config(TrainConfig, CONFIGS / "blip2-flan-t5-xl-lora.yaml")
    assert cfg.model.model_id == "Salesforce/blip2-flan-t5-xl"
    assert cfg.lora.target_modules == ["q", "k", "v"] and cfg.lora.r == 128
    for name in ("blip-large-lora", "instructblip-vicuna-7b-lora", "llava-v1.6-mistral-7b-lora"):
        load_config(TrainConfig, CONFIGS / f"{name}.yaml")


def test_unknown_key_and_qformer_cache_conflict(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown key 'lora.rank'; did you mean lora.r")):
        load_config(TrainConfig, None, {}, ["lora.rank=4"])
    with pytest.raises(ConfigError, match="include_qformer=true trains the Q-Former"):
        load_config(TrainConfig, None, {}, ["lora.include_qformer=true", "feature_cache.enabled=true"])


def test_cuda_graphs_per_compiled_layer_are_refused_with_what_to_set() -> None:
    # They crashed the process on the GPU (docs/benchmarks.md, session 6); the whole-model scope may run them.
    with pytest.raises(ValueError, match="compile_mode=default, or compile_scope=model"):
        TrainConfig(compile=True, compile_mode="reduce-overhead")
    assert TrainConfig(compile=True, compile_mode="reduce-overhead", compile_scope="model").compile
    assert TrainConfig(compile=False, compile_mode="reduce-overhead").compile_scope == "blocks"


def test_training_graphs_with_compile_or_checkpointing_are_refused_with_what_to_set() -> None:
    both = "cuda_graphs=true with compile=true and gradient_checkpointing=true"
    with pytest.raises(ValueError, match=both):
        TrainConfig(cuda_graphs=True, compile=True, gradient_checkpointing=True)
    with pytest.raises(ValueError, match="set cuda_graphs=false or gradient_checkpointing=false"):
        TrainConfig(cuda_graphs=True, gradient_checkpointing=True)
    assert TrainConfig(cuda_graphs=True).cuda_graphs
