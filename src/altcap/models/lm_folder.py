"""altcap-mini's language model as a folder (config, generation config, one `model.safetensors`,
tokenizer): written by `save_causal_lm` (the converted copy in the user cache, saved checkpoints)
and read back by `load_causal_lm` in a fraction of `from_pretrained`'s time.

On a warm `altcap caption` start on 2 cores, `from_pretrained` spent ~0.4 s on work such a folder
never needs: it builds every architecture's weight-renaming table and randomly initialises the tied
LM head before tying it. Here the model is built with empty (meta) weights and the memory-mapped
safetensors tensors are assigned in place. The tokenizer gets its added tokens from
`tokenizer_config.json` (written at save time), so transformers does not parse the 3.5 MB
`tokenizer.json` in Python only to find them (~0.25 s). A folder this shortcut does not recognise
(sharded, other keys or dtypes) goes through `from_pretrained`.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_CONFIG = "tokenizer_config.json"
# With either present, transformers merges them into the added tokens: leave such folders as they are.
LEGACY_TOKEN_FILES = ("special_tokens_map.json", "added_tokens.json")


def save_causal_lm(language_model: Any, tokenizer: Any, folder: Path) -> None:
    """`save_pretrained` by hand, plus the added tokens in `tokenizer_config.json`.

    By hand because a model read from a GGUF keeps its (dequantising) quantizer, and transformers
    refuses to save such a model, though its weights are plain tensors by now.

    Args:
        language_model: a transformers causal LM.
        tokenizer: its tokenizer.
        folder: where to write (created).
    """
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(language_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    language_model.generation_config.save_pretrained(folder)
    # save_model writes tied weights (SmolLM2's embedding and LM head) once; loading re-ties them.
    save_model(language_model, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
    write_added_tokens(folder)


def write_added_tokens(folder: Path) -> None:
    """Copy `tokenizer.json`'s added tokens into `tokenizer_config.json` as `added_tokens_decoder`,
    the form transformers reads them in without parsing `tokenizer.json` in Python; the tokenizer it
    builds is the same (tests/models/test_lm_folder.py)."""
    config_path, tokenizer_path = folder / TOKENIZER_CONFIG, folder / "tokenizer.json"
    if not (config_path.is_file() and tokenizer_path.is_file()):
        return
    if any((folder / name).exists() for name in LEGACY_TOKEN_FILES):
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "added_tokens_decoder" in config:
        return
    added = json.loads(tokenizer_path.read_text(encoding="utf-8")).get("added_tokens") or []
    config["added_tokens_decoder"] = {
        str(token["id"]): {key: value for key, value in token.items() if key != "id"} for token in added
    }
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_causal_lm(folder: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a folder `save_causal_lm` wrote, or any transformers
    causal LM folder.

    Args:
        folder: the language model's folder.

    Returns:
        (model, tokenizer), equal to what `from_pretrained` gives (same weights, buffers, configs).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = assign_safetensors(folder)
    if model is None:
        model = AutoModelForCausalLM.from_pretrained(folder)
    return model, AutoTokenizer.from_pretrained(folder)


def skip_weight_init() -> Any:
    """transformers' own switch that makes torch's and PEFT's init functions no-ops (what
    from_pretrained uses), for models whose weights are meta or about to be replaced; a plain context
    where the installed transformers has none (building is then only slower)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        return contextlib.nullcontext()
    return no_init_weights()


def assign_safetensors(folder: Path) -> Any | None:
    """The causal LM of `folder` with its single safetensors file's tensors assigned in place (no
    copy, no random init); None when the folder does not fit that shortcut.

    Args:
        folder: a folder with `config.json` and `model.safetensors`.

    Returns:
        The model in eval mode, or None.
    """
    from accelerate import init_empty_weights
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    weights = folder / WEIGHTS_FILE
    if not (weights.is_file() and (folder / "config.json").is_file()):
        return None
    config = AutoConfig.from_pretrained(folder)
    # Parameters on meta, buffers (RoPE frequencies) computed on the CPU as in any construction. Without
    # no_init_weights transformers still "initialises" every meta weight through torch's Python
    # reference kernels (~0.25 s of a warm start); the loaded tensors replace them all anyway.
    with init_empty_weights(include_buffers=False), skip_weight_init():
        model = AutoModelForCausalLM.from_config(config)  # in config.dtype, as from_pretrained
    state = load_file(weights)
    expected = dict(model.named_parameters(remove_duplicate=False))  # tied ones under both names
    if any(name not in expected or tensor.dtype != expected[name].dtype for name, tensor in state.items()):
        return None
    missing = set(model.load_state_dict(state, strict=False, assign=True).missing_keys)
    model.tie_weights(missing_keys=missing)  # also takes the tied ones off `missing`
    if missing or any(param.is_meta for param in model.parameters()):
        return None
    # As from_pretrained sets them: the weights' dtype, and the folder (PEFT records it).
    model.config.dtype, model.config.name_or_path = model.dtype, str(folder)
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model.eval()
