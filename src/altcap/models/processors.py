"""Load a checkpoint's processor with or without torchvision, and apply altcap's image-size limits.

The processors of Qwen2/2.5/3-VL, Qwen3.5, SmolVLM, InternVL, LLaVA-OneVision, GLM-4V and Gemma 4
declare a video processor, which transformers builds only with torchvision, so
`AutoProcessor.from_pretrained` raises an ImportError without it. altcap never processes video:
without torchvision such a processor is built from its other parts (tokenizer, the PIL image
processor, chat template). Processors whose image processor exists only as a torchvision one
(LFM2-VL, Cohere2-Vision, ...) truly need it, and say so in one sentence.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

VIDEO_ATTRIBUTE = "video_processor"
TORCHVISION_INSTALL = "pip install torchvision (the build matching your torch, see https://pytorch.org)"

BuildPlan = Literal["auto", "without_video", "needs_torchvision"]


class ProcessorLoadError(ValueError):
    """A processor that cannot be built here; the message says what to install."""


@functools.cache
def torchvision_available() -> bool:
    """Whether torchvision imports (a wheel built for another torch fails at import, not at install)."""
    try:
        importlib.import_module("torchvision")
    except Exception:
        return False
    return True


def plan_processor_build(
    processor_attributes: list[str], image_backends: dict[str, str], has_torchvision: bool
) -> BuildPlan:
    """How to build a processor.

    Args:
        processor_attributes: the processor class's parts (`ProcessorMixin.get_attributes()`).
        image_backends: the model type's image processor classes by backend ("pil", "torchvision").
        has_torchvision: whether torchvision imports.

    Returns:
        "auto" (AutoProcessor as usual), "without_video" (from its parts, no video processor), or
        "needs_torchvision" (no image processor exists without it).
    """
    if has_torchvision:
        return "auto"
    if "image_processor" in processor_attributes and image_backends and "pil" not in image_backends:
        return "needs_torchvision"
    if VIDEO_ATTRIBUTE in processor_attributes:
        return "without_video"
    return "auto"


@functools.cache
def without_video(processor_class: type) -> type:
    """A subclass of `processor_class` whose parts exclude the video processor (same class name,
    so what it saves loads as the original class)."""
    from transformers.processing_utils import ProcessorMixin

    attributes = processor_class.get_attributes()
    video_at = attributes.index(VIDEO_ATTRIBUTE) if VIDEO_ATTRIBUTE in attributes else len(attributes)
    parameter = inspect.signature(processor_class.__init__).parameters.get(VIDEO_ATTRIBUTE)
    requires_video = parameter is not None and parameter.default is inspect.Parameter.empty

    class DropVideo(ProcessorMixin):
        # Sits between the processor class and ProcessorMixin in the MRO, so the video processor
        # the class's own __init__ hands on (by position or keyword) never reaches the type checks.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop(VIDEO_ATTRIBUTE, None)
            super().__init__(*args[:video_at], *args[video_at + 1 :], **kwargs)

    @classmethod  # type: ignore[misc]
    def get_attributes(cls: type) -> list[str]:
        return [name for name in attributes if name != VIDEO_ATTRIBUTE]

    @classmethod  # type: ignore[misc]
    def from_dict(cls: type, processor_dict: dict[str, Any], **kwargs: Any) -> Any:
        # SmolVLM's __init__ requires a video processor argument: None fills its place.
        if requires_video:
            processor_dict = {**processor_dict, VIDEO_ATTRIBUTE: None}
        return processor_class.from_dict.__func__(cls, processor_dict, **kwargs)

    namespace = {
        "get_attributes": get_attributes,
        "from_dict": from_dict,
        "__module__": processor_class.__module__,
    }
    return type(processor_class.__name__, (processor_class, DropVideo), namespace)


def _processor_class(model_type: str) -> tuple[type | None, dict[str, str]]:
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, processor_class_from_name

    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    backends = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type) or {}
    if isinstance(backends, str):
        backends = {"torchvision": backends}
    return (processor_class_from_name(name) if name else None), dict(backends)


def load_processor(model_id: str, model_type: str, trust_remote_code: bool = False) -> Any:
    """The checkpoint's processor, built without a video processor when torchvision is missing.

    Args:
        model_id: hub id or folder.
        model_type: the checkpoint's `config.model_type`.
        trust_remote_code: passed to transformers.

    Returns:
        A transformers processor.

    Raises:
        ProcessorLoadError: the processor needs torchvision and it is missing.
    """
    from transformers import AutoProcessor

    processor_class, backends = _processor_class(model_type)
    attributes = processor_class.get_attributes() if processor_class is not None else []
    plan = plan_processor_build(attributes, backends, torchvision_available())
    if plan == "needs_torchvision":
        raise ProcessorLoadError(
            f"{model_id!r} ({model_type}) has an image processor that needs torchvision, which is not "
            f"installed or does not import here; install it: {TORCHVISION_INSTALL}"
        )
    if plan == "without_video":
        logger.info("torchvision missing: %s processor built without its video processor", model_type)
        return without_video(processor_class).from_pretrained(model_id, trust_remote_code=trust_remote_code)
    if VIDEO_ATTRIBUTE in attributes and folder_lacks_video_processor(model_id):
        # A folder saved where torchvision was missing (a merged run, a tiny test model) has no video
        # processor to load, and AutoProcessor would fail for it on a machine that has torchvision.
        logger.info("%s has no video processor: %s processor built without one", model_id, model_type)
        return without_video(processor_class).from_pretrained(model_id, trust_remote_code=trust_remote_code)
    return AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code)


def folder_lacks_video_processor(model_id: str) -> bool:
    """Whether `model_id` is a local folder with no video processor settings, in their own file or
    nested in processor_config.json (a hub id is taken to have them, as published repos do)."""
    folder = Path(model_id)
    if not folder.is_dir() or (folder / "video_preprocessor_config.json").is_file():
        return False
    nested = folder / "processor_config.json"
    try:
        return not (nested.is_file() and VIDEO_ATTRIBUTE in json.loads(nested.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def apply_pixel_limits(processor: Any, max_pixels: int | None, min_pixels: int | None) -> dict[str, Any]:
    """Map altcap's image-size limits onto the image processor's own settings.

    Qwen-VL / GLM-4V take pixel counts (`size.longest_edge`/`shortest_edge` are counts there);
    Idefics3 / SmolVLM resize the longest edge (sqrt of the pixel budget, in whole tiles);
    InternVL / Aya Vision cap the number of tiles; Gemma 3's pan-and-scan stays off (one 896 px view).

    Args:
        processor: the loaded processor (changed in place).
        max_pixels: most pixels per image (None = the checkpoint's own).
        min_pixels: fewest pixels per image (None = the checkpoint's own).

    Returns:
        The settings changed, {name: value}, for the run's provenance and logs.
    """
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return {}
    applied: dict[str, Any] = {}
    if hasattr(image_processor, "do_pan_and_scan"):
        image_processor.do_pan_and_scan = False
        applied["do_pan_and_scan"] = False
    if max_pixels is None and min_pixels is None:
        return applied
    size = dict(getattr(image_processor, "size", None) or {})
    if hasattr(image_processor, "merge_size") and "longest_edge" in size:  # pixel counts (Qwen, GLM)
        size.update({k: v for k, v in (("longest_edge", max_pixels), ("shortest_edge", min_pixels)) if v})
        image_processor.size = size
        applied["size"] = size
    elif hasattr(image_processor, "max_image_size") and "longest_edge" in size and max_pixels:
        tile = image_processor.max_image_size["longest_edge"]
        size["longest_edge"] = max(tile, int(max_pixels**0.5) // tile * tile)
        image_processor.size = size
        applied["size"] = size
    elif hasattr(image_processor, "max_patches") and max_pixels:
        tile = size.get("height") or size.get("longest_edge")
        image_processor.max_patches = max(1, max_pixels // (tile * tile))
        applied["max_patches"] = image_processor.max_patches
    else:
        logger.info(
            "%s has a fixed input size %s; max/min_image_pixels do not apply",
            type(image_processor).__name__,
            size,
        )
    return applied
