"""A tiny BLIP-2 checkpoint and a small manifest of generated images, shared by the caption tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # An unknown hub id must fail at once instead of retrying the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def tiny_blip2(tiny_model_dir: Callable[..., Path]) -> Path:
    return tiny_model_dir("blip2", "opt")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """7 images (5 test, 2 train) of different sizes, one test image with its own prompt."""
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    rows = []
    for index in range(7):
        Image.fromarray(rng.integers(0, 255, (24 + 8 * index, 40, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"im{index}.jpg"
        )
        rows.append(
            {
                "image": f"imgs/im{index}.jpg",
                "captions": ["a dog"],
                "split": "test" if index < 5 else "train",
                "prompt": "Say what is there." if index == 2 else None,
            }
        )
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
