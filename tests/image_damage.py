"""Damaged and phone-format image files for the tests of every stage that reads images (a uniquely
named module, importable from any test folder because tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import builtins
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DAMAGE_KINDS = ("truncated", "corrupt", "not_an_image", "zero_bytes", "permission_denied")


def _png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _deny(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make opening `path` raise PermissionError: tests run as root, whom chmod does not stop."""
    denied = os.path.abspath(path)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.path.abspath(file) == denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    # Pillow opens through builtins.open, pathlib (read_bytes) through io.open.
    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width` x `height` but holds almost no data (cheap stand-in for a huge image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def damage_image(path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Overwrite an image with one kind of damage (see DAMAGE_KINDS); returns the path."""
    data = bytearray(_png_bytes(seed=len(str(path))))
    if kind == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif kind == "corrupt":  # a valid header, then zeroed compressed pixel data
        start = data.index(b"IDAT") + 20
        data[start : start + 30] = bytes(30)
        path.write_bytes(bytes(data))
    elif kind == "not_an_image":
        path.write_bytes(b"<html>404 not found</html>")
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "permission_denied":
        path.write_bytes(bytes(data))
        _deny(monkeypatch, path)
    else:
        raise ValueError(f"unknown damage {kind!r}; one of {DAMAGE_KINDS}")
    return path


PHONE_SUFFIXES = (".heic", ".webp", ".avif")


def write_phone_photos(folder: Path, stem: str = "phone") -> list[Path]:
    """One small photo in each phone format (HEIC, WebP, AVIF), distinct per format."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, suffix in enumerate(PHONE_SUFFIXES):
        rng = np.random.default_rng(seed + 7)
        blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(blocks).resize((64, 48), Image.Resampling.BICUBIC)
        image.save(folder / f"{stem}{seed}{suffix}", quality=90)
        paths.append(folder / f"{stem}{seed}{suffix}")
    return paths
