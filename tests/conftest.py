"""Fixtures shared by every stage's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from image_damage import damage_image


@pytest.fixture
def damage(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, str], Path]:
    """damage(path, kind) -> path: overwrite an image with one kind of damage (image_damage.DAMAGE_KINDS)."""
    return lambda path, kind: damage_image(path, kind, monkeypatch)
