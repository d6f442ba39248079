"""The vision feature cache of chat VLMs: the frozen vision tower and projector run once per image,
and every epoch after that trains the language model from the stored features.

The seam is transformers' own: its chat VLMs (5.25) take `mm_encoder_outputs={"image": output of
get_image_features}` in `forward` and then place the features with their own code (placeholder
mask and scatter, Qwen's 3-D rope index from `image_grid_thw`, Gemma's image attention from token
types). Handing a model its own output object keeps each family's logic intact, where building
`inputs_embeds` here would copy every family's position and mask rules. To record that object, the
model's forward runs on the real pixel inputs and is stopped the moment `get_image_features`
returns: whatever arguments a forward gives its tower (grid, image sizes, feature layer) are its
own, and the language model does not run during the fill.

Stored per image: the rows that fill its placeholder tokens (`image_features`), how many tokens
one tile has when the model keeps tiles as a (tiles, tokens, hidden) tensor (`image_tile_tokens`,
0 when it keeps one tensor per image), and per-layer extras such as Qwen3-VL's
`deepstack_features.<layer>`. Rows of a batch are zero-padded; each row's real length is its count
of image tokens in `input_ids`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from altcap.config import ConfigError
from altcap.models.caption_loss import caption_loss
from altcap.models.registry import FeatureCache

IMAGE_FEATURES = "image_features"
TILE_TOKENS = "image_tile_tokens"
# Fields of get_image_features' output that are no per-layer extra: the features themselves
# (pooler_output, stored apart) and the tower's internals, which the language model never reads.
_NOT_EXTRAS = frozenset({"pooler_output", "last_hidden_state", "hidden_states", "attentions"})


class _ImageOutputsCaptured(Exception):
    """Raised inside the model's forward to stop it once the image features exist."""

    def __init__(self, output: Any):
        super().__init__("image features captured")
        self.output = output


def capture_image_outputs(model: Any, inputs: Mapping[str, Any]) -> Any:
    """What the model's own forward gets from `get_image_features` for these inputs.

    Args:
        model: a chat VLM (PEFT-wrapped or not).
        inputs: `build_inputs` output with pixels (labels are ignored).

    Returns:
        The `get_image_features` output (pooler_output = the features the forward places).

    Raises:
        ValueError: the model has no `get_image_features`, or its forward never called it.
    """
    owners = [m for m in model.modules() if "get_image_features" in type(m).__dict__]
    if not owners:
        raise ValueError(f"{type(model).__name__} has no get_image_features: no feature cache")

    def stop_after(original: Any) -> Any:
        def stop(*args: Any, **kwargs: Any) -> Any:
            raise _ImageOutputsCaptured(original(*args, **kwargs))

        return stop

    for module in owners:  # an instance attribute shadows the class's method for this call only
        module.get_image_features = stop_after(module.get_image_features)
    try:
        model(**{key: value for key, value in inputs.items() if key != "labels"})
    except _ImageOutputsCaptured as captured:
        return captured.output
    finally:
        for module in owners:
            del module.get_image_features
    raise ValueError(f"{type(model).__name__}.forward never called get_image_features: no feature cache")


def describe_missing_seam(model_class: type) -> str | None:
    """Why this transformers release cannot train `model_class` from cached features, else None.

    The seam (`forward(mm_encoder_outputs=...)`) exists in the tested 5.25 but not in every 5.x
    (the GPU image's 5.17 lacks it).
    """
    import inspect

    import transformers

    if "mm_encoder_outputs" in inspect.signature(model_class.forward).parameters:
        return None
    return (
        f"{model_class.__name__}.forward in transformers {transformers.__version__} takes no precomputed "
        "image features (`mm_encoder_outputs`, tested with 5.25); upgrade transformers or set "
        "feature_cache.enabled=false"
    )


def check_feature_seam(hf_class: str) -> str | None:
    """`FeatureCache.check`: `describe_missing_seam` of a transformers class named by the family."""
    import transformers

    return describe_missing_seam(getattr(transformers, hf_class))


def require_feature_seam(model: Any) -> None:
    """Refuse a model whose forward takes no precomputed features (before the fill, not at step 1).

    Raises:
        ConfigError: naming `feature_cache.enabled`, the transformers version and the fix.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if (reason := describe_missing_seam(type(base))) is not None:
        raise ConfigError([f"feature_cache: {reason}"])


def count_image_tokens(model: Any, input_ids: torch.Tensor) -> list[int]:
    """Image placeholder tokens per row (how many feature rows each row's image fills)."""
    names = ("image_token_id", "image_token_index")
    token_id = next((v for n in names if (v := getattr(model.config, n, None)) is not None), None)
    if token_id is None:
        raise ValueError(f"{type(model).__name__}'s config names no image token: no feature cache")
    return (input_ids == int(token_id)).sum(dim=1).tolist()


def split_rows(value: Any, counts: list[int]) -> list[torch.Tensor]:
    """Feature rows per batch row, from a (tiles, tokens, hidden) tensor or a sequence of tensors."""
    if isinstance(value, torch.Tensor):
        flat = value.reshape(-1, value.shape[-1])
    else:
        flat = torch.cat([part.reshape(-1, part.shape[-1]) for part in value])
    if flat.shape[0] != sum(counts):
        raise ValueError(
            f"{flat.shape[0]} image feature rows for {sum(counts)} image tokens: the features cannot be "
            "assigned to rows, so this model cannot use the feature cache"
        )
    return list(flat.split(counts))


def pad_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """(batch, longest row, hidden), zero-padded (the cache stores and stacks rows this way)."""
    padded = rows[0].new_zeros((len(rows), max(row.shape[0] for row in rows), rows[0].shape[-1]))
    for index, row in enumerate(rows):
        padded[index, : row.shape[0]] = row
    return padded


def encode_chat_images(model: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The frozen part's output for a batch, one padded row per image (`FeatureCache.encode_images`).

    Args:
        model: a chat VLM; run it under `torch.no_grad()` and in eval mode for a cache.
        inputs: `build_inputs` output with pixels, one image per row.

    Returns:
        {"image_features": (batch, tokens, hidden), "image_tile_tokens": (batch,), per-layer
        extras "<field>.<layer>": (batch, tokens, hidden)}.
    """
    require_feature_seam(model)
    output = capture_image_outputs(model, inputs)
    counts = count_image_tokens(model, inputs["input_ids"])
    pooled = output.pooler_output
    tile = pooled.shape[-2] if isinstance(pooled, torch.Tensor) and pooled.dim() == 3 else 0
    features = {
        IMAGE_FEATURES: pad_rows(split_rows(pooled, counts)),
        TILE_TOKENS: torch.full((len(counts),), tile, dtype=torch.long),
    }
    for name, value in output.items():
        if name in _NOT_EXTRAS or value is None:
            continue
        if isinstance(value, torch.Tensor):
            raise ValueError(f"{type(model).__name__}: image output {name!r} has no per-layer form to cache")
        for layer, part in enumerate(value):  # e.g. Qwen3-VL's deepstack features, one entry per layer
            features[f"{name}.{layer}"] = pad_rows(split_rows(part, counts))
    return features


def rebuild_image_outputs(features: Mapping[str, torch.Tensor], counts: list[int]) -> Any:
    """The `get_image_features` output the forward expects, from cached (padded) rows."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    rows = [features[IMAGE_FEATURES][index, :count] for index, count in enumerate(counts)]
    tile = int(features[TILE_TOKENS][0])
    pooled = torch.cat(rows).reshape(-1, tile, rows[0].shape[-1]) if tile else rows
    output = BaseModelOutputWithPooling(pooler_output=pooled)
    extras: dict[str, list[tuple[int, tuple[torch.Tensor, ...]]]] = {}
    for key, value in features.items():
        if "." in key:
            name, layer = key.rsplit(".", 1)
            per_row = tuple(value[index, :count] for index, count in enumerate(counts))
            extras.setdefault(name, []).append((int(layer), per_row))
    for name, layers in extras.items():
        setattr(output, name, [per_row for _, per_row in sorted(layers, key=lambda item: item[0])])
    return output


def without_pixels(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs minus what only the vision tower reads (`pixel_values`, `pixel_attention_mask`)."""
    return {key: value for key, value in inputs.items() if not key.startswith("pixel_")}


def run_from_chat_features(
    model: Any, features: Mapping[str, torch.Tensor], inputs: Mapping[str, Any]
) -> Any:
    """The model's full output (loss, logits) with cached image features instead of the tower.

    Args:
        model: the chat VLM (PEFT-wrapped in training).
        features: `encode_chat_images` output (or rows loaded from the cache, stacked).
        inputs: the text inputs (pixel tensors, if present, are left out).

    Returns:
        The model's output, equal to `model(**inputs)` while tower and projector are frozen.
    """
    return model(**without_pixels(inputs), **cached_image_kwargs(model, features, inputs))


def forward_from_chat_features(
    model: Any, features: Mapping[str, torch.Tensor], inputs: Mapping[str, Any]
) -> torch.Tensor:
    """`FeatureCache.forward_from_features`: the loss of `run_from_chat_features`, with logits only
    at the caption positions (`models/caption_loss.py`)."""
    return caption_loss(model, without_pixels(inputs), **cached_image_kwargs(model, features, inputs))


def cached_image_kwargs(
    model: Any, features: Mapping[str, torch.Tensor], inputs: Mapping[str, Any]
) -> dict[str, Any]:
    """The forward argument that hands the model cached image features (`mm_encoder_outputs`),
    split per image as the batch's image tokens need them."""
    counts = count_image_tokens(model, inputs["input_ids"])
    return {"mm_encoder_outputs": {"image": rebuild_image_outputs(features, counts)}}


def build_chat_feature_cache(vision_parts: tuple[str, ...]) -> FeatureCache:
    """The `FeatureCache` capability of a chat VLM whose tower + projector sit at `vision_parts`.

    Args:
        vision_parts: dotted paths of the vision tower and projector in the unwrapped model
            (e.g. ("model.visual",) for Qwen-VL, whose merger sits inside it).

    Returns:
        The capability record.
    """
    return FeatureCache(
        encode_images=encode_chat_images,
        forward_from_features=forward_from_chat_features,
        frozen_modules=vision_parts,
        feature_keys=(IMAGE_FEATURES, TILE_TOKENS),
        check=check_feature_seam,
    )
