"""Tiny random checkpoints of every family and chat VLM, built once per test session (no hub access)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants
import pytest

from altcap.models.tiny import build_tiny_model
from altcap.models.tiny_chat import build_tiny_chat_model


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # An unknown hub id must fail at once instead of retrying the network for ~25 s.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: `tiny_model_dir("blip2", "t5")` -> folder of a saved tiny checkpoint (cached)."""
    built: dict[tuple[str, str | None], Path] = {}

    def build(family: str, variant: str | None = None) -> Path:
        key = (family, variant)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{family}-{variant or 'default'}")
            built[key] = build_tiny_model(family, folder, seed=0, variant=variant)
        return built[key]

    return build


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: `chat_dir("qwen2_5_vl")` -> folder of that tiny chat VLM (seed 0), built once per session.

    Shared by every test module here, so read it only: a test that changes files copies the folder.
    """
    built: dict[str, Path] = {}

    def build(model_type: str) -> Path:
        if model_type not in built:
            folder = tmp_path_factory.mktemp(f"chat-{model_type}")
            built[model_type] = build_tiny_chat_model(model_type, folder)
        return built[model_type]

    return build
