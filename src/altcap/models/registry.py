"""A closed registry of model families: one frozen record of plain functions per family.

Each module in `altcap.models.families` (one file a family) calls `register_family` at import;
`get_family` imports them all on first use. No base classes, and nothing outside `altcap.models`
names a family: the rest of the code asks a family's fields.

Core contract (images are RGB PIL images; `build_inputs` returns CPU tensors that callers move with
`altcap.models.text_inputs.move_to_device(inputs, model.device, model.dtype)`):
- `load(spec) -> (model, processor)` for an `altcap.models.loading.ModelConfig`; users call
  `load_model(spec)`, which checks id, family and adapter first.
- `build_inputs(processor, images, prompts, captions=None, *, with_pixels=True) -> dict`: with
  captions also `labels`, -100 everywhere but the caption tokens and their end token (encoder-
  decoder LMs: labels are the caption alone). `with_pixels=False` builds the same text tensors
  without decoding any image (`images` may then be paths or (height, width) pairs).
- `generate(model, processor, inputs, generation) -> list[str]`: the new text only; `generation`
  holds `model.generate` keyword arguments.
- `prompts` are instructions (None = `DEFAULT_INSTRUCTION`; each family formats them its own way).
  `default_lora_targets` are leaf Linear names of all the family's LMs (`apply_lora` keeps those the
  model has), looked for under the sub-module `lora_scope` ("" = the whole model).
Optional capabilities are typed records, None when absent (`FeatureCache`, `GraphedDecoding`,
`QuantizedLoading`, `VisionBlocks`, `FrozenPartLora`, `PartLora`, `NativeCheckpoint`,
`PackedVisionAttention`); each says its contract.
Frozen module names may be dotted or bare parameters: resolve them with `operator.attrgetter`.
`altcap.models.tiny.build_tiny_model` saves a tiny random checkpoint of any family for tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_INSTRUCTION = "Provide a detailed caption for this photo."


@dataclass(frozen=True)
class FeatureCache:
    """Capability: train from cached outputs of a frozen part instead of running it every epoch."""

    # `(model, inputs) -> {feature_keys: Tensor}`: the frozen part's output for a batch.
    encode_images: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    # `(model, features, text_inputs) -> loss`, equal to `model(**inputs).loss` while frozen.
    forward_from_features: Callable[[Any, Mapping[str, Any], Mapping[str, Any]], Any]
    # Attributes of the unwrapped model the cache assumes frozen: dotted paths or bare parameters.
    frozen_modules: tuple[str, ...]
    feature_keys: tuple[str, ...]
    # Frozen modules whose outputs the cache holds (freed from the GPU while training from it);
    # None = all of frozen_modules. InstructBLIP's Q-Former reads the prompt, so it is not cached.
    cached_modules: tuple[str, ...] | None = None
    # `(hf_class) -> why the installed libraries cannot train from the cache, or None`; None = always can.
    check: Callable[[str], str | None] | None = None

    @property
    def cached_part(self) -> tuple[str, ...]:
        """The frozen modules a feature cache replaces (`cached_modules`, else all `frozen_modules`)."""
        return self.cached_modules if self.cached_modules is not None else self.frozen_modules


@dataclass(frozen=True)
class GraphedDecoding:
    """Capability: `generate` honours `generation["cuda_graphs"]` (`models/graphed_generate.py`)."""

    # `(model, processor) -> reason it cannot run here (with the fix), or None`.
    check: Callable[[Any, Any], str | None]


@dataclass(frozen=True)
class GraphedTraining:
    """Capability: `train.cuda_graphs` replays the language model's training passes as CUDA graphs
    (`models/graphed_chat_training.py`)."""

    # `(LoRA-wrapped model on CUDA) -> router`, whose `describe()` says what ran how (passes
    # replayed, passes run eagerly and why); raises ValueError for a model off CUDA.
    enable: Callable[[Any], Any]


@dataclass(frozen=True)
class QuantizedLoading:
    """Capability: QLoRA, the base model loaded in 4-bit NF4 by the family's own loader."""

    # `(ModelConfig) -> (model, processor)`, weights 4-bit, compute in bf16 (CUDA + bitsandbytes).
    load_4bit: Callable[[Any], tuple[Any, Any]]


@dataclass(frozen=True)
class VisionBlocks:
    """Capability: train the vision tower's last n blocks in full (`train_vision_blocks`)."""

    # `(unwrapped model, n) -> module names`, saved with the adapter as modules_to_save.
    last_blocks: Callable[[Any, int], list[str]]


@dataclass(frozen=True)
class FrozenPartLora:
    """Capability: LoRA also inside the frozen part on request (`lora.include_qformer`)."""

    targets: tuple[str, ...]  # leaf Linear names there, looked for in the whole model


@dataclass(frozen=True)
class PartLora:
    """Capability: LoRA also on the projector or the vision tower (`lora.adapt_projector`,
    `lora.adapt_vision`); both are frozen and untouched by default."""

    # `(unwrapped model, part) -> full names of that part's Linear layers`; part: "projector" | "vision".
    find_layers: Callable[[Any, str], list[str]]


@dataclass(frozen=True)
class NativeCheckpoint:
    """Capability of a family whose model is no transformers class: it knows its own ids and folders
    (AutoConfig cannot read them), and its processor comes only with its weights."""

    # `model_id -> the family's model_type` for an id or folder it owns, else None; reads no weights.
    model_type_of: Callable[[str], str | None]


@dataclass(frozen=True)
class PackedVisionAttention:
    """Capability: the vision tower attends within packed spans (`cu_seqlens`: images or windows),
    which transformers' sdpa path loops over one span at a time; the family's loader gives the tower
    one call per layer instead (`models/vision_attention.py`) unless `model.vision_attention="sdpa"`."""

    # The model config's attribute holding the tower's config, whose attention alone is swapped.
    sub_config: str = "vision_config"


@dataclass(frozen=True)
class ModelFamily:
    """How altcap drives one model class: core functions plus optional, typed capabilities."""

    name: str
    hf_class: str
    model_types: tuple[str, ...]
    default_lora_targets: tuple[str, ...]
    load: Callable[[Any], tuple[Any, Any]]
    build_inputs: Callable[..., dict[str, Any]]
    generate: Callable[[Any, Any, Mapping[str, Any], Mapping[str, Any]], list[str]]
    lora_scope: str = ""
    # `(ModelConfig) -> processor` without the weights (checks the first batch before loading);
    # None = `AutoProcessor.from_pretrained`, or nothing for a `NativeCheckpoint` family.
    load_processor: Callable[[Any], Any] | None = None
    # `(model, inputs with labels, **forward kwargs) -> loss` for training; None = `model(**inputs).loss`.
    # Chat VLMs project only the caption positions onto the vocabulary (`models/caption_loss.py`).
    caption_loss: Callable[..., Any] | None = None
    # Non-LoRA modules trained in full and saved with the adapter (altcap-mini's projector).
    modules_to_save: tuple[str, ...] = ()
    # Whether `build_inputs`' tensor shapes depend on the images' sizes (LLaVA-NeXT: tiles and
    # placeholders per image), so inputs built for parts of a batch may not stack into the whole.
    inputs_shaped_by_image_size: bool = False
    # Whether prompts come from the checkpoint's own chat template (shown by `altcap models`).
    uses_chat_template: bool = False
    # Whether the prompt is an instruction the model reads (so a record's context may go into it);
    # False where it is a fixed prefix or task token (BLIP, PaliGemma, Florence-2).
    follows_instructions: bool = False
    feature_cache: FeatureCache | None = None
    graphed_decoding: GraphedDecoding | None = None
    graphed_training: GraphedTraining | None = None
    quantized: QuantizedLoading | None = None
    vision_blocks: VisionBlocks | None = None
    frozen_part_lora: FrozenPartLora | None = None
    part_lora: PartLora | None = None
    native: NativeCheckpoint | None = None
    packed_vision_attention: PackedVisionAttention | None = None

    def capabilities(self) -> list[str]:
        """Names of the optional capabilities this family has (for listings and errors)."""
        return [f.name for f in fields(self) if f.name in _CAPABILITIES and getattr(self, f.name) is not None]


_CAPABILITIES = (
    "feature_cache",
    "graphed_decoding",
    "graphed_training",
    "quantized",
    "vision_blocks",
    "frozen_part_lora",
    "part_lora",
    "native",
    "packed_vision_attention",
)


_REGISTRY: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family; a second family with the same name is a programming error."""
    if family.name in _REGISTRY:
        raise ValueError(f"model family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def _import_families() -> None:
    # Every module of the families package registers itself on import: adding a family is adding a file.
    # Found by name, as plugins are: each family module imports this registry, so a static import of
    # the package here would be an import circle.
    families = importlib.import_module("altcap.models.families")
    for info in pkgutil.iter_modules(families.__path__, f"{families.__name__}."):
        importlib.import_module(info.name)


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


def families_with(capability: str) -> list[str]:
    """Names of the registered families that have `capability` (a `ModelFamily` capability field)."""
    _import_families()
    return sorted(name for name, family in _REGISTRY.items() if getattr(family, capability) is not None)


def family_for_model_type(model_type: str) -> ModelFamily:
    """The family whose transformers `config.model_type` matches (used when a config omits `family`)."""
    _import_families()
    for family in _REGISTRY.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for f in _REGISTRY.values() for t in f.model_types)
    raise KeyError(f"no altcap family handles model_type {model_type!r}; supported: {', '.join(known)}")
