"""The language model folder: the fast load gives exactly what `from_pretrained` gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from altcap.models.lm_folder import TOKENIZER_CONFIG, assign_safetensors, load_causal_lm, save_causal_lm
from altcap.models.mini_tokens import TINY_CHAT_TEMPLATE
from altcap.models.tiny import build_tiny_tokenizer

TEXT = "<image><image>\na photo of a dog on the grass"


def build_tied_lm(folder: Path) -> Path:
    """A tiny Llama with tied embeddings (as SmolLM2's) and a chat tokenizer, saved by `save_causal_lm`."""
    tokenizer = build_tiny_tokenizer("llama", ("<image>",))
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    save_causal_lm(LlamaForCausalLM(config).eval(), tokenizer, folder)
    return folder


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tied_lm(tmp_path_factory.mktemp("lm") / "language_model")


def tensors_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return tensors


def test_fast_load_equals_from_pretrained(lm_folder: Path) -> None:
    assert assign_safetensors(lm_folder) is not None  # the shortcut, not the fallback
    model, _ = load_causal_lm(lm_folder)
    reference = AutoModelForCausalLM.from_pretrained(lm_folder)
    ours, theirs = tensors_of(model), tensors_of(reference)
    assert ours.keys() == theirs.keys() and "model.rotary_emb.inv_freq" in ours
    assert all(torch.equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in ours)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as from_pretrained ties it
    assert model.config.to_dict() == reference.config.to_dict()
    assert model.generation_config == reference.generation_config and not model.training
    ids = torch.tensor([[1, 5, 9, 20, 3]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_added_tokens_in_the_config_give_the_same_tokenizer(lm_folder: Path, tmp_path: Path) -> None:
    assert "added_tokens_decoder" in json.loads((lm_folder / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
    legacy = shutil.copytree(lm_folder, tmp_path / "legacy")  # as transformers itself saves it
    config = json.loads((legacy / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
    del config["added_tokens_decoder"]
    (legacy / TOKENIZER_CONFIG).write_text(json.dumps(config), encoding="utf-8")
    ours, theirs = load_causal_lm(lm_folder)[1], AutoTokenizer.from_pretrained(legacy)
    assert type(ours) is type(theirs)
    assert ours.added_tokens_decoder == theirs.added_tokens_decoder
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert ours.all_special_ids == theirs.all_special_ids
    assert ours.get_vocab() == theirs.get_vocab() and ours.chat_template == theirs.chat_template
    assert ours(TEXT)["input_ids"] == theirs(TEXT)["input_ids"]
    messages = [{"role": "user", "content": TEXT}]
    assert ours.apply_chat_template(messages) == theirs.apply_chat_template(messages)


def test_a_folder_the_shortcut_does_not_fit_loads_through_from_pretrained(tmp_path: Path) -> None:
    folder = build_tied_lm(tmp_path / "half")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "dtype": "float16"}), encoding="utf-8")
    assert assign_safetensors(folder) is None  # float32 weights for a float16 model: transformers casts them
    model, _ = load_causal_lm(folder)
    reference = AutoModelForCausalLM.from_pretrained(folder)
    assert model.lm_head.weight.dtype == reference.lm_head.weight.dtype == torch.float16
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
