"""Shared fixtures: tiny random models (built once per session) and small manifests in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

_HF_CLASS = {
    "blip": "BlipForConditionalGeneration",
    "blip2": "Blip2ForConditionalGeneration",
    "instructblip": "InstructBlipForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
}


def reinit_vanishing_weights(folder: Path, family: str) -> None:
    """Give near-zero matrices a 0.02 normal init.

    BLIP's vision configs default to initializer_range=1e-10, which makes a tiny random vision
    tower output the same features for every image; nothing could then learn to tell images apart.
    """
    import torch
    import transformers

    model = getattr(transformers, _HF_CLASS[family]).from_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2 and param.std() < 1e-6:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    model.save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """tiny_model(family, variant=None) -> folder; each (family, variant) is built once per session."""
    built: dict[tuple[str, str | None], Path] = {}

    def get(family: str, variant: str | None = None) -> Path:
        from altcap.models.tiny import build_tiny_model  # here, so collecting tests/train imports no torch

        key = (family, variant)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{family}-{variant or 'default'}")
            build_tiny_model(family, folder, seed=0, variant=variant)
            reinit_vanishing_weights(folder, family)
            built[key] = folder
        return built[key]

    return get
