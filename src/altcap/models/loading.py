"""Load any supported captioner (hub id or folder, optional LoRA adapter) and attach LoRA.

Every problem a user can cause (a missing folder, an unknown hub id, an unsupported model type, an
adapter for another model, LoRA targets that match nothing) is a `ModelLoadError` before any load.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import Field

from altcap.config import StageConfig
from altcap.models.hub_errors import explain_hub_error
from altcap.models.registry import (
    ModelFamily,
    families_with,
    family_for_model_type,
    get_family,
    list_families,
)

DType = Literal["bfloat16", "float16", "float32"]


class ModelLoadError(ValueError):
    """A model, family or adapter that cannot be used; the message names the value and the fix."""


class ModelConfig(StageConfig):
    """Which model to load and how (shared by `altcap train`, `altcap caption` and the benchmarks)."""

    model_id: str = Field(
        default="altcap-mini",
        description="Hub id or local folder of a transformers checkpoint (what `from_pretrained` takes); "
        "the default altcap-mini ships in the package and needs no network.",
    )
    family: str | None = Field(
        default=None,
        description="altcap model family (blip, blip2, instructblip, llava_next, ...); None infers it "
        "from the checkpoint's config.model_type.",
    )
    dtype: DType | None = Field(
        default=None,
        description="Weights dtype; None = bfloat16 on CUDA (float16 if the GPU lacks bf16), float32 on CPU.",
    )
    device: str = Field(
        default="auto", description="'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1'."
    )
    adapter: str | None = Field(
        default=None, description="Folder of a PEFT LoRA adapter to load on top; None = base."
    )
    trust_remote_code: bool = Field(default=False, description="Allow custom model code from the checkpoint.")
    max_image_pixels: int | None = Field(
        default=None,
        gt=0,
        description="Most pixels per image for chat VLMs, mapped onto the processor's own setting (Qwen "
        "max_pixels, SmolVLM/Idefics3 longest_edge, InternVL tiles); None = the checkpoint's.",
    )
    min_image_pixels: int | None = Field(
        default=None,
        gt=0,
        description="Fewest pixels per image (Qwen-VL / GLM-4V min_pixels); None = the checkpoint's.",
    )
    max_length: int | None = Field(
        default=None,
        gt=0,
        description="Most tokens per training sequence (chat VLMs); longer rows lose caption tokens only, "
        "never image or prompt tokens. None = the tokenizer's model_max_length.",
    )
    vision_attention: Literal["auto", "sdpa"] = Field(
        default="auto",
        description="Vision attention of towers that pack images/windows (Qwen-VL, GLM-4V): 'auto' = one "
        "varlen call per layer; 'sdpa' = transformers' loop of one call per image or window (to compare).",
    )


def resolve_device(device: str) -> str:
    """The torch device string for a config value ('auto' picks CUDA when present)."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def resolve_dtype(dtype: str | None, device: str) -> Any:
    """The torch dtype: the configured one, else bf16 on CUDA (fp16 without bf16 support), fp32 on CPU.

    Args:
        dtype: "bfloat16", "float16", "float32" or None for the device default.
        device: a resolved device string.

    Returns:
        A `torch.dtype`.
    """
    import torch

    if dtype is not None:
        return getattr(torch, dtype)
    # CPU matmuls in half precision are slow and lossy; fp32 is the only sensible CPU default.
    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or Path(model_id).exists()


def _native_model_type(model_id: str) -> str | None:
    """The model_type of a non-transformers family that owns `model_id` (its packaged id or folder)."""
    owners = (get_family(name).native for name in families_with("native"))
    return next((found for native in owners if (found := native.model_type_of(model_id)) is not None), None)


def read_model_config(cfg: ModelConfig) -> Any:
    """The checkpoint's transformers config, with a clear error for a bad folder or hub id."""
    from transformers import AutoConfig

    model_id = cfg.model_id
    native = _native_model_type(model_id)
    if native is not None:
        # Not a transformers architecture, so AutoConfig cannot read it.
        return SimpleNamespace(model_type=native)
    if _looks_like_path(model_id):
        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(
                f"model_id={model_id!r}: folder not found; give an existing checkpoint folder or a hub id"
            )
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"model_id={model_id!r}: {folder}/config.json missing; the folder must hold a checkpoint "
                "written by save_pretrained"
            )
    try:
        return AutoConfig.from_pretrained(model_id, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        if message := explain_hub_error(model_id, err):
            raise ModelLoadError(message) from err
        raise ModelLoadError(
            f"model_id={model_id!r}: not a local checkpoint folder and not loadable from the hub ({err}); "
            "check the id, or download it (`hf download ID --local-dir DIR`) and pass the folder"
        ) from err


def resolve_family(cfg: ModelConfig, model_type: str) -> ModelFamily:
    """The configured family (checked against the checkpoint's model_type), else the inferred one."""
    supported = ", ".join(list_families())
    if cfg.family is None:
        try:
            return family_for_model_type(model_type)
        except KeyError as err:
            raise ModelLoadError(
                f"model_id={cfg.model_id!r} has model_type {model_type!r}, which no altcap family supports; "
                f"supported families: {supported}"
            ) from err
    try:
        family = get_family(cfg.family)
    except KeyError as err:
        message = f"family={cfg.family!r} is not supported; supported families: {supported}"
        raise ModelLoadError(message) from err
    if model_type not in family.model_types:
        raise ModelLoadError(
            f"family={cfg.family!r} expects model_type {', '.join(family.model_types)}, but model_id="
            f"{cfg.model_id!r} is {model_type!r}; drop `family` to infer it, or pick the matching family"
        )
    return family


def check_adapter_folder(adapter: str) -> dict[str, Any]:
    """Read and sanity-check a LoRA adapter folder; returns its adapter_config.json."""
    folder = Path(adapter).expanduser()
    config_path = folder / "adapter_config.json"
    if not folder.is_dir():
        raise ModelLoadError(f"adapter={adapter!r}: folder not found; pass the folder `altcap train` wrote")
    if not config_path.is_file():
        raise ModelLoadError(f"adapter={adapter!r}: {config_path} missing; this is not a PEFT adapter folder")
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{config_path}: not valid JSON ({err}); re-save the adapter") from err


def load_model(cfg: ModelConfig, *, four_bit: bool = False) -> tuple[Any, Any, ModelFamily]:
    """Load model + processor (+ adapter) for a config, checking everything before loading weights.

    Args:
        cfg: which checkpoint, family, dtype, device and adapter.
        four_bit: 4-bit NF4 base weights (QLoRA), by the family's `QuantizedLoading` (CUDA).

    Returns:
        (model in eval mode on its device, processor, family).

    Raises:
        ModelLoadError: unknown id/folder, unsupported family, gated or unreachable hub model,
            missing or incompatible adapter, or no 4-bit loader in the family.
    """
    hf_config = read_model_config(cfg)
    family = resolve_family(cfg, hf_config.model_type)
    adapter_config = check_adapter_folder(cfg.adapter) if cfg.adapter else None
    if four_bit and family.quantized is None:
        raise ModelLoadError(
            f"family {family.name!r} has no 4-bit loader (QLoRA); set qlora=false. "
            f"Families with one: {', '.join(families_with('quantized')) or 'none'}"
        )
    loader = family.quantized.load_4bit if four_bit and family.quantized is not None else family.load
    try:
        model, processor = loader(cfg)
    except OSError as err:
        if message := explain_hub_error(cfg.model_id, err):
            raise ModelLoadError(message) from err
        raise
    if adapter_config is not None:
        model = attach_adapter(model, cfg.adapter)
    from altcap.models import aligned_mlp, fused_rms_norm, fused_vision_rotary  # torch out of `--help`

    aligned_mlp.align_gated_mlps(model)  # last: the padded copies are of the final weights
    fused_rms_norm.fuse_rms_norms(model)
    fused_vision_rotary.fuse_vision_rotary(model)
    model.eval()
    return model, processor, family


def load_pretrained(
    model_class: Any, processor_class: Any, cfg: ModelConfig, *, four_bit: bool = False
) -> tuple[Any, Any]:
    """`from_pretrained` of a model and its processor on the configured device and dtype.

    Family modules call this from their `load` (and `QuantizedLoading.load_4bit`, with four_bit),
    so every family resolves dtype/device the same way.

    Args:
        model_class, processor_class: transformers classes (or Auto classes).
        cfg: model id, dtype, device, trust_remote_code.
        four_bit: weights in 4-bit NF4 with double quantisation and bf16 compute (QLoRA).

    Returns:
        (model, processor).
    """
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    extra: dict[str, Any] = {}
    if four_bit:
        import torch

        from altcap.models.quantization import build_quantization_config

        dtype = torch.bfloat16
        extra["quantization_config"] = build_quantization_config()
    # device_map places weights straight on the device, instead of a full CPU copy first.
    model = model_class.from_pretrained(
        cfg.model_id, dtype=dtype, device_map={"": device}, trust_remote_code=cfg.trust_remote_code, **extra
    )
    processor = processor_class.from_pretrained(cfg.model_id, trust_remote_code=cfg.trust_remote_code)
    return model, processor


def build_weightless_model(family: ModelFamily, hf_config: Any) -> Any | None:
    """The family's model built from its config on the meta device (no memory, no weights), to match
    LoRA targets before loading; None for a family that is no transformers class.
    """
    import torch
    import transformers

    from altcap.models.lm_folder import skip_weight_init

    model_class = getattr(transformers, family.hf_class, None)
    if family.native is not None or model_class is None:
        return None
    # Concrete classes build through `_from_config`, Auto classes (a generic family) through `from_config`.
    build = getattr(model_class, "_from_config", None) or model_class.from_config
    # Meta tensors hold no values, yet initialisers would still run on them (0.65 -> 0.41 s, Qwen2.5-VL-3B).
    with skip_weight_init(), torch.device("meta"):
        return build(hf_config)


def load_processor(family: ModelFamily, cfg: ModelConfig) -> Any | None:
    """The checkpoint's processor alone (no weights), or None when the family's comes with its weights."""
    from transformers import AutoProcessor

    if family.native is not None:
        return None
    if family.load_processor is not None:
        return family.load_processor(cfg)
    return AutoProcessor.from_pretrained(cfg.model_id, trust_remote_code=cfg.trust_remote_code)


def attach_adapter(model: Any, adapter: str) -> Any:
    """Wrap `model` with the LoRA adapter in `adapter`; a mismatch is a `ModelLoadError`."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ModelLoadError(
            f"adapter={adapter!r} does not fit model {type(model).__name__} ({err}); use the adapter trained "
            "on this base model_id"
        ) from err


def linear_layer_names(model: Any, scope: str = "") -> list[str]:
    """Full names of the Linear layers LoRA can wrap, optionally only under a sub-module named `scope`."""
    import torch

    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".lora_" not in name and not name.endswith(".base_layer")
    ]
    if scope:
        names = [n for n in names if f".{scope}." in f".{n}"]
    return names


def build_target_regex(target_modules: list[str], scope: str) -> str:
    """A PEFT `target_modules` regex (PEFT full-matches it): leaf names, under `scope` when given;
    dotted names (`lora.adapt_vision`'s layers) are full module names."""
    leaves = "|".join(re.escape(t) for t in target_modules)
    if not scope or any("." in t for t in target_modules):
        return rf"(.*\.)?({leaves})"
    return rf"(.*\.)?{re.escape(scope)}\.(.*\.)?({leaves})"


def resolve_lora_targets(
    model: Any, family: ModelFamily, target_modules: list[str] | None, scope: str | None, field_name: str
) -> tuple[list[str], str]:
    """The leaf names to wrap and the scope, checked against the model's real Linear layers.

    Raises:
        ModelLoadError: naming `field_name` when a given target (or every default) matches nothing.
    """
    scope = family.lora_scope if scope is None else scope
    candidates = linear_layer_names(model, scope)
    leaf_names = {name.rsplit(".", 1)[-1] for name in candidates}
    if target_modules:
        targets = list(target_modules)
        missing = [t for t in targets if t not in leaf_names and t not in candidates]
    else:
        # A family's defaults cover all its decoders (OPT q_proj, T5 q); keep those this model has.
        targets = [t for t in family.default_lora_targets if t in leaf_names]
        missing = [] if targets else list(family.default_lora_targets)
    if missing:
        where = f" under {scope!r}" if scope else ""
        hint = ", ".join(sorted(leaf_names)[:20]) or "none"
        raise ModelLoadError(
            f"{field_name}={targets!r}: {missing!r} matched no Linear layer{where} of "
            f"{type(model).__name__}; "
            f"its Linear layer names{where}: {hint}"
        )
    return targets, scope


def apply_lora(
    model: Any,
    family: ModelFamily,
    target_modules: list[str] | None = None,
    r: int = 128,
    alpha: int = 128,
    dropout: float = 0.05,
    *,
    scope: str | None = None,
    field_name: str = "lora.target_modules",
    extra_modules_to_save: list[str] | None = None,
) -> Any:
    """Wrap `model` with fresh LoRA layers (everything else frozen).

    Args:
        model: the base model from `load_model`.
        family: its family (gives default targets and the scope).
        target_modules: leaf layer names, e.g. ["q_proj", "v_proj"]; each must match a layer.
            None = the family defaults this model has.
        r, alpha, dropout: LoRA rank, scaling numerator and dropout.
        scope: sub-module the targets must sit in; None = family.lora_scope, "" = whole model
            (e.g. to add the Q-Former's "query"/"value" layers).
        field_name: the config field to name in errors.
        extra_modules_to_save: more modules trained in full and saved with the adapter (e.g. the
            vision blocks of `train_vision_blocks`), besides the family's own.

    Returns:
        A `peft.PeftModel`.

    Raises:
        ModelLoadError: naming `field_name` when some target matches no Linear layer.
    """
    from peft import LoraConfig, get_peft_model

    targets, scope = resolve_lora_targets(model, family, target_modules, scope, field_name)
    lora_config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        target_modules=build_target_regex(targets, scope),
        modules_to_save=[*family.modules_to_save, *(extra_modules_to_save or [])] or None,
    )
    return get_peft_model(model, lora_config)
