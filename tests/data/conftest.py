"""Tiny image and dataset fixtures for the data-layer tests, all generated in tmp_path."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FLICKR8K = Path("/work/shared/data/flickr8k")


def make_photo(path: Path, seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Path:
    """A small, textured image (distinct per seed, so perceptual hashes differ) saved by suffix."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.BICUBIC)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares huge dimensions but holds almost no data (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def jpeg_bytes(image: Image.Image, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save_args)
    return buffer.getvalue()


def write_manifest_lines(path: Path, rows: list[dict | str | bytes]) -> Path:
    """A manifest written line by line; str/bytes rows are written raw (to plant broken lines)."""
    with path.open("wb") as handle:
        for row in rows:
            if isinstance(row, dict):
                handle.write(json.dumps(row).encode() + b"\n")
            elif isinstance(row, str):
                handle.write(row.encode() + b"\n")
            else:
                handle.write(row + b"\n")
    return path


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Six distinct small JPEGs in tmp_path/images."""
    return [make_photo(tmp_path / "images" / f"p{i}.jpg", seed=i) for i in range(6)]
