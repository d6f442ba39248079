"""Caption with the instruction an adapter was trained with.

A LoRA adapter learns to answer the prompt (and the context template) its training used; asked
another way it writes worse captions, silently. `altcap run` passes the trained ones on; here a
standalone `altcap caption --adapter runs/x/adapter` finds them in the run folder's config.yaml
(written by `altcap train`) when the user gave none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from altcap.cli_output import show_note
from altcap.data.context import DEFAULT_CONTEXT_TEMPLATE
from altcap.infer.config import CaptionConfig

RUN_MARKERS = ("config.yaml", "provenance.json")
SEARCH_DEPTH = 3  # adapter/, best/ or checkpoints/<step>/adapter/ under the run folder


def find_training_config(adapter: str) -> Path | None:
    """The config.yaml of the training run an adapter folder belongs to, or None."""
    folder = Path(adapter).expanduser().resolve()
    for candidate in [folder, *folder.parents][: SEARCH_DEPTH + 1]:
        if all((candidate / marker).is_file() for marker in RUN_MARKERS):
            return candidate / "config.yaml"
    return None


def read_trained_prompt(config_path: Path) -> dict[str, Any]:
    """`prompt` and `context_template` from a training config's `data` section (those present)."""
    try:
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        # Not this command's input to refuse; but the user should know the adapter may be asked
        # another way than it was trained.
        show_note(
            f"{config_path}: could not read the prompt the adapter was trained with ({type(err).__name__}); "
            "captioning with --prompt or the family's default"
        )
        return {}
    data = loaded.get("data") if isinstance(loaded, dict) else None
    if not isinstance(data, dict):
        return {}
    return {key: data[key] for key in ("prompt", "context_template") if isinstance(data.get(key), str)}


def adopt_trained_prompt(cfg: CaptionConfig) -> CaptionConfig:
    """`cfg` with the adapter's trained prompt and context template where the user left the defaults.

    Args:
        cfg: the resolved caption config.

    Returns:
        `cfg` itself when there is no adapter, no run config, or nothing to adopt; else a copy.
    """
    if not cfg.model.adapter:
        return cfg
    config_path = find_training_config(cfg.model.adapter)
    trained = read_trained_prompt(config_path) if config_path else {}
    updates = {}
    if cfg.prompt is None and trained.get("prompt"):
        updates["prompt"] = trained["prompt"]
    if cfg.context_template == DEFAULT_CONTEXT_TEMPLATE and trained.get("context_template"):
        updates["context_template"] = trained["context_template"]
    updates = {key: value for key, value in updates.items() if value != getattr(cfg, key)}
    if not updates:
        return cfg
    show_note(f"captioning with the {' and '.join(updates)} the adapter was trained with ({config_path})")
    return cfg.model_copy(update=updates)
