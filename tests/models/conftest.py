"""Tiny chat-VLM checkpoints built once per test session (no hub access); the other families' tiny
checkpoints are `tiny_model_dir` of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants
import pytest


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # An unknown hub id must fail at once instead of retrying the network for ~25 s.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: `chat_dir("qwen2_5_vl")` -> folder of that tiny chat VLM (seed 0), built once per session.

    Shared by every test module here, so read it only: a test that changes files copies the folder.
    """
    built: dict[str, Path] = {}

    def build(model_type: str) -> Path:
        from altcap.models.tiny_chat import build_tiny_chat_model  # here: transformers costs collection ~1 s

        if model_type not in built:
            folder = tmp_path_factory.mktemp(f"chat-{model_type}")
            built[model_type] = build_tiny_chat_model(model_type, folder)
        return built[model_type]

    return build
