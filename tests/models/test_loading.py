"""load_model / apply_lora: clear errors before any work, dtype defaults, adapter round trip."""

from __future__ import annotations

import json

import _family_checks as checks
import pytest
import torch
from transformers import BertConfig

from altcap.config import ConfigError, load_config
from altcap.models.loading import ModelConfig, ModelLoadError, apply_lora, load_model, resolve_dtype


def test_missing_folder_is_named(tmp_path) -> None:
    missing = tmp_path / "no-model"
    with pytest.raises(ModelLoadError, match="folder not found") as err:
        load_model(ModelConfig(model_id=str(missing)))
    assert str(missing) in str(err.value)


def test_folder_without_config(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"config\.json missing"):
        load_model(ModelConfig(model_id=str(tmp_path)))


def test_unknown_hub_id() -> None:
    with pytest.raises(ModelLoadError, match="nobody/no-such-model"):
        load_model(ModelConfig(model_id="nobody/no-such-model"))


def test_unsupported_model_type_lists_families(tmp_path) -> None:
    BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="model_type 'bert'") as err:
        load_model(ModelConfig(model_id=str(tmp_path)))
    for family in ("blip", "blip2", "instructblip", "llava_next"):
        assert family in str(err.value)


def test_unknown_family_name_lists_supported(tiny_model_dir) -> None:
    with pytest.raises(ModelLoadError, match=r"family='gpt9' is not supported.*llava_next"):
        load_model(ModelConfig(model_id=str(tiny_model_dir("blip")), family="gpt9"))


def test_family_that_does_not_match_checkpoint(tiny_model_dir) -> None:
    with pytest.raises(ModelLoadError, match="family='llava_next' expects model_type llava_next"):
        load_model(ModelConfig(model_id=str(tiny_model_dir("blip")), family="llava_next"))


def test_unknown_config_key_is_rejected(tmp_path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("model_id: x\nadaptor: y\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"adaptor.*did you mean adapter"):
        load_config(ModelConfig, path)


def test_dtype_defaults() -> None:
    assert resolve_dtype(None, "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert "float32 on CPU" in ModelConfig.model_fields["dtype"].description


def test_dtype_is_applied(tiny_model_dir) -> None:
    model, _, _ = load_model(
        ModelConfig(model_id=str(tiny_model_dir("blip")), dtype="bfloat16", device="cpu")
    )
    assert next(model.text_decoder.parameters()).dtype is torch.bfloat16


def test_missing_adapter_folder(tiny_model_dir, tmp_path) -> None:
    cfg = ModelConfig(model_id=str(tiny_model_dir("blip")), adapter=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match=r"adapter=.*folder not found"):
        load_model(cfg)


def test_adapter_folder_without_config(tiny_model_dir, tmp_path) -> None:
    cfg = ModelConfig(model_id=str(tiny_model_dir("blip")), adapter=str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"adapter_config.json missing"):
        load_model(cfg)


def _save_trained_adapter(folder, adapter_dir) -> None:
    model, _, family = checks.load(folder)
    torch.manual_seed(0)
    peft_model = apply_lora(model, family, None, r=4, alpha=8, dropout=0.0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    peft_model.save_pretrained(adapter_dir)


def test_adapter_round_trip_changes_and_reproduces_outputs(tiny_model_dir, tmp_path) -> None:
    folder = tiny_model_dir("blip2", "opt")
    _save_trained_adapter(folder, tmp_path / "adapter")
    base, processor, family = checks.load(folder)
    tuned, _, _ = load_model(
        ModelConfig(model_id=str(folder), adapter=str(tmp_path / "adapter"), device="cpu")
    )
    tuned_again, _, _ = load_model(
        ModelConfig(model_id=str(folder), adapter=str(tmp_path / "adapter"), device="cpu")
    )
    inputs = family.build_inputs(processor, checks.make_images(), checks.PROMPTS, checks.CAPTIONS)
    with torch.no_grad():
        base_loss, tuned_loss, again_loss = (m(**inputs).loss for m in (base, tuned, tuned_again))
    assert not torch.isclose(base_loss, tuned_loss)
    torch.testing.assert_close(tuned_loss, again_loss)


def test_adapter_for_another_model_is_rejected(tiny_model_dir, tmp_path) -> None:
    _save_trained_adapter(tiny_model_dir("blip2", "opt"), tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    assert json.loads(config_path.read_text())["target_modules"]
    with pytest.raises(ModelLoadError, match="does not fit model"):
        load_model(ModelConfig(model_id=str(tiny_model_dir("blip")), adapter=str(tmp_path / "adapter")))


def test_lora_target_that_matches_nothing_names_field_and_real_layers(tiny_model_dir) -> None:
    model, _, family = checks.load(tiny_model_dir("blip2", "opt"))
    with pytest.raises(ModelLoadError) as err:
        apply_lora(model, family, ["q_proj", "qkv_nope"], r=4, alpha=8, dropout=0.0)
    message = str(err.value)
    assert "lora.target_modules" in message and "qkv_nope" in message
    assert "k_proj" in message and "fc1" in message


def test_lora_scope_can_widen_to_the_qformer(tiny_model_dir) -> None:
    model, _, family = checks.load(tiny_model_dir("blip2", "opt"))
    peft_model = apply_lora(
        model, family, ["q_proj", "v_proj", "query", "value"], r=4, alpha=8, dropout=0.0, scope=""
    )
    wrapped = [n for n, _ in peft_model.named_modules() if n.endswith(".lora_A")]
    assert any("qformer" in n for n in wrapped) and any("language_model" in n for n in wrapped)
