"""A closed registry of model families, one frozen record of plain functions per family.

Each family module (`blip.py`, `blip2.py`, `instructblip.py`, `llava_next.py`, `altcap_mini.py`)
calls `register_family` at import; `get_family` imports them all on first use. No base classes:
a family is data plus functions, so adding one never touches the others.

Contract of the functions (images are RGB PIL images; `build_inputs` returns CPU tensors, and
callers move them with `altcap.models.text_inputs.move_to_device(inputs, model.device, model.dtype)`
before the other functions see them):

- `load(spec) -> (model, processor)`: `from_pretrained` on `spec.model_id` (hub id or folder),
  `spec` being an `altcap.models.loading.ModelConfig`. Users go through `load_model(spec)`, which
  validates id, family and adapter first and returns `(model, processor, family)`.
- `build_inputs(processor, images, prompts, captions=None, *, with_pixels=True) -> dict`: model
  inputs for a batch. With `captions`, also `labels` in which prompt, image-placeholder and padding
  positions are -100 so the loss covers caption tokens (and the closing EOS) only. Without, inputs
  ready for `generate`. For encoder-decoder LMs (T5) labels are the caption tokens only.
  `with_pixels=False` builds the text inputs only, for `forward_from_features`: the same tensors
  as with pixels (input_ids, attention_mask, labels, and what else depends on the image's size,
  not its pixels: LLaVA-NeXT's `image_sizes`) minus `pixel_values`, without decoding any image.
  `images` may then also be file paths or (height, width) pairs; families whose placeholder
  count is fixed use only their number, LLaVA-NeXT reads sizes from file headers.
- `encode_images(model, inputs) -> dict[str, Tensor]`: the frozen part's output for a batch,
  keys `feature_keys`; this is what the feature cache stores. BLIP: vision tower; BLIP-2: Q-Former
  query outputs; InstructBLIP: vision tower only (its Q-Former reads the instruction, so its
  output is prompt-dependent); LLaVA-NeXT: vision-tower features per tile. Split into per-image
  rows and re-batch with `altcap.models.features` (rows may differ in length: LLaVA tiles).
- `forward_from_features(model, features, inputs) -> Tensor`: the loss computed from cached
  features and text inputs (equals `model(**inputs).loss` while `frozen_modules` stay frozen;
  tested per family, also under LoRA).
- `generate(model, processor, inputs, generation) -> list[str]`: decoded captions (new tokens
  only); `generation` is a dict of `model.generate` keyword arguments (num_beams, max_new_tokens, ...).

`prompts` are instructions (a record's `prompt`; a None entry, or prompts=None, means the family
default: `DEFAULT_INSTRUCTION`, except BLIP, which is not instruction-tuned and gets no prefix).
Each family turns them into its own text format (LLaVA's chat template, BLIP-2 OPT's
"Question: ... Answer:"). `default_lora_targets` are leaf Linear names (a family lists those of
all its decoders, e.g. OPT q_proj and T5 q; `apply_lora` keeps the ones the model has);
`lora_scope` names the sub-module LoRA targets are looked for in (e.g. "language_model", so
LLaVA's CLIP `q_proj` layers are left alone); "" means the whole model. `frozen_modules` are the
attributes the feature cache assumes frozen, on the unwrapped model (`peft_model.get_base_model()`);
they may be dotted (LLaVA: "model.vision_tower") or bare parameters (BLIP-2: "query_tokens"), so
resolve them with `operator.attrgetter(name)(base)`, not `getattr`.
`altcap.models.tiny.build_tiny_model` saves a tiny random checkpoint of any family for tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_FAMILY_MODULES = ("blip", "blip2", "instructblip", "llava_next", "altcap_mini")

DEFAULT_INSTRUCTION = "Provide a detailed caption for this photo."


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
    lora_scope: str = ""
    feature_keys: tuple[str, ...] = field(default=())
    # Non-LoRA modules trained in full and saved with the adapter (altcap-mini's projector).
    modules_to_save: tuple[str, ...] = field(default=())
    # The frozen modules whose outputs the cache holds, so training from features never runs them
    # (freed from the GPU then); None = all of frozen_modules. InstructBLIP's Q-Former stays.
    cached_modules: tuple[str, ...] | None = None
    # Names (on the unwrapped model) of the vision tower's last n blocks, trained in full and saved
    # with the adapter when `train_vision_blocks` > 0; None = the family does not support it.
    last_vision_blocks: Callable[[Any, int], list[str]] | None = None
    # Whether `build_inputs`' tensor shapes depend on the images' sizes (LLaVA-NeXT: tiles and
    # placeholders per image), so inputs built for parts of a batch may not stack into the whole.
    inputs_shaped_by_image_size: bool = False
    # Whether prompts come from the checkpoint's own chat template (shown by `altcap models`).
    uses_chat_template: bool = False

    @property
    def cached_part(self) -> tuple[str, ...]:
        """The frozen modules a feature cache replaces (`cached_modules`, else all `frozen_modules`)."""
        return self.cached_modules if self.cached_modules is not None else self.frozen_modules


_REGISTRY: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family; a second family with the same name is a programming error."""
    if family.name in _REGISTRY:
        raise ValueError(f"model family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def _import_families() -> None:
    import altcap.models.families as families_package

    # One file per family under models/families/: adding a family is adding its file.
    family_files = [info.name for info in pkgutil.iter_modules(families_package.__path__)]
    for name in family_files:
        importlib.import_module(f"altcap.models.families.{name}")
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
