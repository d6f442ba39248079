"""Opening images: `load_image_rgb` for every stage, and `inspect_image` for `data check`.

Both go through Pillow. `inspect_image` runs in worker processes, so it takes and returns plain,
picklable values and never raises for a bad image: the problem is part of its answer.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

GREYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
EXIF_ORIENTATION_TAG = 0x0112
# JPEG decoding at 1/2..1/8 scale (Pillow `draft`) still reads the whole entropy-coded stream, so
# truncation is still caught, at a fraction of the cost; 64 px is plenty for a 32x32 perceptual hash.
HASH_DRAFT_PX = 64


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file, the reason and the fix."""


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit greyscale to 8 bit; Pillow's own convert clips at 255, which whitens 16-bit images."""
    pixels = np.asarray(image, dtype=np.float64)
    top = 65535.0 if pixels.max(initial=0) > 255 else 255.0
    return Image.fromarray(np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8), mode="L")


def convert_to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of a decoded image: 16-bit scaled, palette expanded, alpha composited on white.

    Args:
        image: any decoded Pillow image.

    Returns:
        An RGB image of the same size.
    """
    if image.mode in {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}:
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ALPHA_MODES:
        # Transparent pixels often hold black or junk colour; white is what a viewer shows behind them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_image_rgb(path: Path | str, draft_size_px: int | None = None) -> Image.Image:
    """Open an image for a model: decode fully, apply EXIF orientation, convert to RGB.

    Args:
        path: the image file.
        draft_size_px: for JPEGs, let the decoder shrink by up to 8x while both sides stay at least
            this large (much faster for big photos a processor resizes anyway); None = full size.

    Returns:
        A loaded RGB Pillow image.

    Raises:
        ImageLoadError: the file is missing, not an image, truncated or too large to decode safely.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(
            f"{path}: image not found; fix the path in the manifest or run `altcap data check`"
        )
    try:
        with Image.open(path) as opened:
            if draft_size_px is not None:
                opened.draft("RGB", (draft_size_px, draft_size_px))
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened
            return convert_to_rgb(image)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(
            f"{path}: too many pixels to decode safely ({err}); downscale the image"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(
            f"{path}: cannot be decoded ({err}); re-export it as JPEG/PNG or drop it (`altcap data check`)"
        ) from err


def _problem(facts: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    facts["problem"] = code
    facts["problem_message"] = message
    return facts


def _classify_error(err: Exception) -> str:
    # Pillow signals a cut-off file only through the message text of a plain OSError.
    return "IMAGE_TRUNCATED" if "truncated" in str(err).lower() else "IMAGE_UNREADABLE"


def _describe_header(facts: dict[str, Any], image: Image.Image) -> None:
    rawmode = image.tile[0][3] if image.tile else ""
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else str(rawmode)
    facts["bits16"] = image.mode.startswith("I;16") or ";16" in rawmode
    facts["alpha"] = image.mode in ALPHA_MODES or "transparency" in image.info
    facts["exif_orientation"] = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)


def _decode_and_hash(facts: dict[str, Any], image: Image.Image) -> dict[str, Any]:
    try:
        image.draft("RGB" if image.mode != "L" else "L", (HASH_DRAFT_PX, HASH_DRAFT_PX))
        image.load()
    except (OSError, SyntaxError, ValueError) as err:
        return _problem(facts, _classify_error(err), str(err))
    upright = ImageOps.exif_transpose(image) or image
    facts["phash"] = str(imagehash.phash(convert_to_rgb(upright)))
    return facts


def inspect_image(path: str, max_image_pixels: int) -> dict[str, Any]:
    """Facts about one image file for `data check`; never raises for a bad image.

    Args:
        path: absolute image path.
        max_image_pixels: above this many pixels the image is reported and not decoded.

    Returns:
        Dict with path, bytes, sha256, format, mode, width, height, bits16, alpha,
        exif_orientation, phash (hex) and problem / problem_message (None when the image is fine).
    """
    facts: dict[str, Any] = {"path": path, "problem": None, "problem_message": None, "phash": None}
    file = Path(path)
    if not file.is_file():
        return _problem(facts, "IMAGE_MISSING", "no such file")
    data = file.read_bytes()
    facts["bytes"] = len(data)
    if not data:
        return _problem(facts, "IMAGE_ZERO_BYTES", "file is empty (0 bytes)")
    facts["sha256"] = hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            facts.update(format=image.format, mode=image.mode, width=image.width, height=image.height)
            if image.width * image.height > max_image_pixels:
                message = f"{image.width}x{image.height} exceeds {max_image_pixels} pixels"
                return _problem(facts, "IMAGE_DECOMPRESSION_BOMB", message)
            _describe_header(facts, image)
        except Image.DecompressionBombError as err:
            return _problem(facts, "IMAGE_DECOMPRESSION_BOMB", str(err))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            return _problem(facts, _classify_error(err), str(err))
        return _decode_and_hash(facts, image)
