"""The five shipped chat-VLM recipes' architectures at full size with random weights, saved as
`from_pretrained` folders (no model hub on the machines that run the benchmarks).

Sizes are the checkpoints' config.json values (`chat_configs`, sources cited); the embedding tables keep
the real vocabulary, so the LM head costs what the real one does, while the tokenizer is a byte-level
BPE trained here on the benchmark's own caption corpus (`chat_data.build_corpus`), so prompts and
captions are about as many tokens long as with the real tokenizers (one token per word). Chat
templates, special tokens and the processor classes come from altcap's tiny chat specs
(`altcap.models.tiny_chat_specs`), which copy each checkpoint's turn markers; the image processors
get the checkpoints' own resolution settings, and altcap maps a recipe's `max_image_pixels` onto
them at load time as it does for a hub id. `TINY_OVERRIDES` shrink each architecture (2 layers,
64 wide) through the same builder for CPU tests.

    from benchmarks.chat_archs import build_chat_arch
    build_chat_arch("qwen2.5-vl-3b-instruct", Path("/root/models/qwen25"), "cuda", corpus)
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.chat_configs import CHAT_ARCHS, FULL_ARCHS, TINY_OVERRIDES

logger = logging.getLogger(__name__)

_VIDEO_PROCESSORS = {
    "qwen2_5_vl": "Qwen2VLVideoProcessor",
    "qwen3_vl": "Qwen3VLVideoProcessor",
    "smolvlm": "SmolVLMVideoProcessor",
}
# SmolVLM's processor writes <row_r_col_c> before each tile; the checkpoint's 1536 px is 4 x 4 tiles.
_SMOL_TILES = tuple(f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5))


def build_spec(name: str, tiny: bool = False) -> Any:
    """altcap's tiny chat spec of the model type, with the checkpoint's (or `tiny`) sizes.

    Args:
        name: one of CHAT_ARCHS.
        tiny: apply TINY_OVERRIDES (CPU tests).

    Returns:
        A `TinySpec` whose text/vision/top/processor fields are the full ones.
    """
    from altcap.models.tiny_chat import TINY_SPECS

    model_type, text, vision, top, image_processor, processor = copy.deepcopy(FULL_ARCHS[name])
    if tiny:
        tiny_text, tiny_vision, tiny_top = TINY_OVERRIDES[name]
        text, vision, top = {**text, **tiny_text}, {**vision, **tiny_vision}, {**top, **tiny_top}
    spec = TINY_SPECS[model_type]
    specials = spec.specials
    if model_type == "smolvlm":
        specials = (*[s for s in specials if not s.startswith("<row_")], *_SMOL_TILES)
    return dataclasses.replace(
        spec, specials=specials, text=text, vision=vision, top={**spec.top, **top},
        image_processor=image_processor, processor={**spec.processor, **processor},
    ), model_type


def build_tokenizer(spec: Any, corpus: Sequence[str], vocab_size: int) -> Any:
    """Byte-level BPE with the spec's special tokens learned from `corpus`, exactly as altcap's
    tiny chat tokenizers are built."""
    from altcap.models.tiny_chat import build_chat_tokenizer

    return build_chat_tokenizer(spec, corpus, vocab_size)


def build_config(model_type: str, spec: Any, tokenizer: Any) -> Any:
    """The model type's config with the spec's sizes and the tokenizer's special-token ids."""
    from transformers import AutoConfig

    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id}
    ids["eos_token_id"] = tokenizer.eos_token_id
    text = {**ids, "initializer_range": 0.02, **spec.text}
    tokens = {key: tokenizer.convert_tokens_to_ids(token) for key, token in spec.token_ids.items()}
    return AutoConfig.for_model(
        model_type, **{spec.text_key: text, "vision_config": spec.vision}, **tokens, **ids, **spec.top
    )


def build_chat_model(
    name: str, device: str, corpus: Sequence[str], tiny: bool = False, vocab_size: int = 8000
) -> tuple[Any, Any]:
    """Build `name` with seeded random bf16 weights on `device`, with its processor.

    Args:
        name: one of CHAT_ARCHS.
        device: where the weights are made ("cuda" takes seconds where the CPU takes minutes;
            "meta" makes none, for counting parameters).
        corpus: texts the tokenizer learns from (the benchmark's prompts and captions).
        tiny: TINY_OVERRIDES sizes (CPU tests), same code path.
        vocab_size: most BPE entries (below every model's embedding table).

    Returns:
        (model, processor).
    """
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from altcap.models.chat_vlm import stop_token_ids

    if name not in FULL_ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(CHAT_ARCHS)}")
    spec, model_type = build_spec(name, tiny)
    tokenizer = build_tokenizer(spec, corpus, vocab_size)
    config = build_config(model_type, spec, tokenizer)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    processor = build_processor(model_type, spec, tokenizer)
    # Like the checkpoints' generation_config.json: greedy, stop at EOS or the end-of-turn token
    # (the stops altcap's captioning uses, so both sides of a comparison stop alike).
    model.generation_config = GenerationConfig(
        eos_token_id=stop_token_ids(processor),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return model, processor


def build_processor(model_type: str, spec: Any, tokenizer: Any) -> Any:
    """altcap's tiny-chat processor builder (PIL image processor, no video processor); where the
    installed transformers names its image-processor backends otherwise (releases differ), the
    processor from the classes transformers maps the model type to, with its video processor."""
    from altcap.models.tiny_chat import build_tiny_processor

    try:
        return build_tiny_processor(model_type, spec, tokenizer)
    except Exception as err:  # any failure there has the fallback below
        logger.warning("tiny-chat processor builder failed (%s); building from transformers' names", err)
        return build_processor_from_names(model_type, spec, tokenizer)


def _first_instance(names: Any, kwargs: dict[str, Any]) -> Any:
    """An instance of the first class in `names` (a name, a tuple of names or a backend -> name
    mapping, as transformers releases spell them) that exists and can be built here."""
    import transformers

    names = list(names.values()) if isinstance(names, dict) else [names] if isinstance(names, str) else names
    errors = []
    for name in [n for n in names if n]:
        try:
            return getattr(transformers, name)(**kwargs)
        except Exception as err:  # e.g. a torchvision-only backend without torchvision
            errors.append(f"{name}: {err}")
    raise RuntimeError(f"no class of {names} could be built: {errors}")


def build_processor_from_names(model_type: str, spec: Any, tokenizer: Any) -> Any:
    """The model type's processor built from the classes transformers' auto mappings name."""
    from transformers.models.auto import image_processing_auto, processing_auto

    from altcap.models.tiny_chat import render_template

    class_name = processing_auto.PROCESSOR_MAPPING_NAMES[model_type]
    processor_class = processing_auto.processor_class_from_name(class_name)
    names = image_processing_auto.IMAGE_PROCESSOR_MAPPING_NAMES[model_type]
    kwargs = {"image_processor": _first_instance(names, spec.image_processor), "tokenizer": tokenizer}
    if spec.template:
        kwargs["chat_template"] = render_template(*spec.template)
    if "video_processor" in inspect.signature(processor_class.__init__).parameters:
        from transformers.models.auto import video_processing_auto

        video_names = video_processing_auto.VIDEO_PROCESSOR_MAPPING_NAMES[model_type]
        kwargs["video_processor"] = _first_instance(video_names, {})
    return processor_class(**kwargs, **spec.processor)


def add_video_processor_entry(folder: Path, model_type: str) -> None:
    """Name the checkpoint's video processor in processor_config.json, as a hub checkpoint does.

    The processor is built here without one (none can be made without torchvision), but where
    torchvision is installed (the GPU machines) `AutoProcessor` wants one for Qwen-VL and SmolVLM
    and raises "Can't load video processor" without it; its defaults are enough (altcap never
    processes video).
    """
    name = _VIDEO_PROCESSORS.get(model_type)
    path = folder / "processor_config.json"
    if name is None or not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("video_processor", {"video_processor_type": name})
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def build_chat_arch(name: str, folder: Path, device: str, corpus: Sequence[str], tiny: bool = False) -> Path:
    """Build `name` (see `build_chat_model`) and save model + processor to `folder`.

    Args:
        name: one of CHAT_ARCHS.
        folder: output folder (a `from_pretrained` folder afterwards).
        device: where to initialise the weights.
        corpus: texts the tokenizer learns from.
        tiny: TINY_OVERRIDES sizes (CPU tests).

    Returns:
        `folder`.
    """
    model, processor = build_chat_model(name, device, corpus, tiny)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    add_video_processor_entry(folder, model.config.model_type)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return folder
