"""A closed registry of model families, one frozen record of plain functions per family.

Each family module (`blip.py`, `blip2.py`, `instructblip.py`, `llava_next.py`, `altcap_mini.py`)
calls `register_family` at import; `get_family` imports them all on first use. No base classes:
a family is data plus functions, so adding one never touches the others.

Contract of the functions (all tensors on the model's device; images are RGB PIL images):

- `load(spec) -> (model, processor)`: `from_pretrained` on `spec.model_id` (hub id or folder).
- `build_inputs(processor, images, prompts, captions) -> dict`: model inputs for a batch. With
  `captions`, also `labels` in which prompt, image-placeholder and padding positions are -100 so
  the loss covers caption tokens only. Without, inputs ready for `generate`.
- `encode_images(model, inputs) -> dict[str, Tensor]`: the frozen part's output (vision tower,
  and the Q-Former for BLIP-2 / InstructBLIP) for a batch; this is what the feature cache stores.
- `forward_from_features(model, features, inputs) -> Tensor`: the loss computed from cached
  features and text inputs (must equal `model(**inputs).loss` when the frozen part is frozen).
- `generate(model, processor, inputs, generation) -> list[str]`: decoded captions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_FAMILY_MODULES = ("blip", "blip2", "instructblip", "llava_next", "altcap_mini")


@dataclass(frozen=True)
class ModelFamily:
    """How altcap drives one transformers model class."""

    name: str
    hf_class: str
    model_types: tuple[str, ...]
    default_lora_targets: tuple[str, ...]
    load: Callable[..., tuple[Any, Any]]
    build_inputs: Callable[..., dict[str, Any]]
    generate: Callable[..., list[str]]
    encode_images: Callable[..., dict[str, Any]] | None = None
    forward_from_features: Callable[..., Any] | None = None
    frozen_modules: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family; a second family with the same name is a programming error."""
    if family.name in _REGISTRY:
        raise ValueError(f"model family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def _import_families() -> None:
    for module in _FAMILY_MODULES:
        try:
            importlib.import_module(f"altcap.models.{module}")
        except ModuleNotFoundError as err:
            # Only a family module that does not exist yet is skipped; a missing dependency inside
            # an existing module must surface.
            if err.name != f"altcap.models.{module}":
                raise


def list_families() -> list[str]:
    """Names of every registered family."""
    _import_families()
    return sorted(_REGISTRY)


def get_family(name: str) -> ModelFamily:
    """The family registered under `name`; unknown names list the valid ones."""
    _import_families()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model family {name!r}; known families: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def family_for_model_type(model_type: str) -> ModelFamily:
    """The family whose transformers `config.model_type` matches (used when a config omits `family`)."""
    _import_families()
    for family in _REGISTRY.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for f in _REGISTRY.values() for t in f.model_types)
    raise KeyError(f"no altcap family handles model_type {model_type!r}; supported: {', '.join(known)}")
