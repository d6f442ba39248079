"""Fixtures shared by every stage's tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from image_damage import damage_image

# The tiny models' matrices are a few dozen wide: a second torch (OpenMP) thread only adds a
# synchronisation per op, and on a busy 2-core box each op waited ~10 ms for it. One thread took the
# fast lane from 220 s to 116 s there (CPU time 193 s -> 114 s), and the real altcap-mini pipeline
# test from 313 s to 99 s. Set before anything imports torch, so CLI subprocesses inherit it too;
# a value already set in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # a plugin imported it first
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def damage(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, str], Path]:
    """damage(path, kind) -> path: overwrite an image with one kind of damage (image_damage.DAMAGE_KINDS)."""
    return lambda path, kind: damage_image(path, kind, monkeypatch)


@pytest.fixture(scope="session")
def tiny_altcap_mini_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random altcap-mini (seed 0) saved once per session for every stage's tests; read it only."""
    from altcap.models.tiny import build_tiny_altcap_mini

    return build_tiny_altcap_mini(tmp_path_factory.mktemp("tiny-altcap-mini") / "model")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: `tiny_model_dir("blip2", "t5")` -> folder of a saved tiny checkpoint (seed 0), built once
    per session for every stage's tests; read it only."""
    built: dict[tuple[str, str | None], Path] = {}

    def build(family: str, variant: str | None = None) -> Path:
        key = (family, variant)
        from altcap.models.tiny import build_tiny_model  # here, so stages without torch collect fast

        if key not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{family}-{variant or 'default'}")
            built[key] = build_tiny_model(family, folder, seed=0, variant=variant)
        return built[key]

    return build
