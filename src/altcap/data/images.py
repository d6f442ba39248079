"""Opening images: `load_image_rgb` for every stage, and `inspect_image` for `data check`.

Every stage (import, check, train, caption, the demo) opens images here, so a model is trained on
exactly the pixels it later captions: EXIF orientation applied, alpha composited on white, 16-bit
scaled, any mode made RGB, and a decode limit checked from the header before any pixel is decoded.
HEIC/HEIF come through pillow-heif; WebP and AVIF through Pillow itself (AVIF since Pillow 11.2).

`inspect_image` runs in worker processes, so it takes and returns plain, picklable values and never
raises for a bad image: the problem is part of its answer.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from altcap.data.image_settings import DEFAULT_MAX_DECODED_PIXELS
from altcap.data.quality import QUALITY_SIDE_PX, measure_quality

# Phone photos (iPhones save HEIC by default); registering here covers every process that imports
# the loader, DataLoader and check workers included.
pillow_heif.register_heif_opener()

# What Pillow raises for a file it cannot open or decode (DecompressionBombError is no OSError).
DECODE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError)
GREYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
EXIF_ORIENTATION_TAG = 0x0112
# JPEG decoding at 1/2..1/8 scale (Pillow `draft`) still reads the whole entropy-coded stream, so
# truncation is still caught, at a fraction of the cost; 64 px is plenty for a 32x32 perceptual hash.
HASH_DRAFT_PX = 64

class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file, the reason and the fix.

    `code` is the `data check` finding code of the problem (IMAGE_MISSING, IMAGE_TRUNCATED, ...).
    """

    def __init__(self, message: str, code: str = "IMAGE_UNREADABLE", path: str = ""):
        # torch's DataLoader re-raises a worker's exception as `type(err)(text + worker traceback)`;
        # keep only the original last line, so the user sees the same message as without workers.
        if message.startswith("Caught ImageLoadError") and "Traceback" in message:
            message = message.rstrip().splitlines()[-1].split("ImageLoadError: ", 1)[-1]
        super().__init__(message)
        self.code = code
        self.path = path


# code -> (what is wrong, the fix), shared by every loader and `data check`.
IMAGE_PROBLEMS: dict[str, tuple[str, str]] = {
    "IMAGE_MISSING": ("image not found", "fix the path in the manifest or restore the file"),
    "IMAGE_NO_PERMISSION": ("permission denied", "make the file readable (chmod a+r) or drop the record"),
    "IMAGE_ZERO_BYTES": ("file is empty (0 bytes)", "re-copy or re-download the image"),
    "IMAGE_UNREADABLE": ("not an image Pillow can decode", "re-export it as JPEG/PNG or drop the record"),
    "IMAGE_TRUNCATED": ("file is cut off (truncated)", "re-copy or re-download the image"),
    "IMAGE_DECOMPRESSION_BOMB": (
        "too many pixels to decode",
        "downscale it (e.g. to 2048 px on the long side), drop it, or raise max_decoded_pixels",
    ),
}


def classify_image_error(err: BaseException) -> str:
    """The finding code of an exception raised while opening or decoding an image."""
    if isinstance(err, FileNotFoundError):
        return "IMAGE_MISSING"
    if isinstance(err, PermissionError):
        return "IMAGE_NO_PERMISSION"
    if isinstance(err, Image.DecompressionBombError):
        return "IMAGE_DECOMPRESSION_BOMB"
    # Pillow signals a cut-off file only through the message text of a plain OSError.
    return "IMAGE_TRUNCATED" if "truncated" in str(err).lower() else "IMAGE_UNREADABLE"


def make_load_error(path: Path | str, code: str, detail: str = "") -> ImageLoadError:
    """An `ImageLoadError` whose message names the file, what is wrong, the detail and the fix."""
    what, fix = IMAGE_PROBLEMS[code]
    # The OS's own words for a missing or locked file only repeat the path.
    detail = f" ({detail})" if detail and code not in ("IMAGE_MISSING", "IMAGE_NO_PERMISSION") else ""
    return ImageLoadError(f"{path}: {what}{detail}; {fix}", code=code, path=str(path))


def check_decoded_size(image: Image.Image, path: Path | str, max_decoded_pixels: int | None) -> None:
    """Refuse an opened (not yet decoded) image whose header declares more than the limit.

    Raises:
        ImageLoadError: code IMAGE_DECOMPRESSION_BOMB, naming the size and the limit.
    """
    if max_decoded_pixels is not None and image.width * image.height > max_decoded_pixels:
        detail = f"{image.width}x{image.height} = {image.width * image.height:,} pixels > max_decoded_pixels="
        raise make_load_error(path, "IMAGE_DECOMPRESSION_BOMB", f"{detail}{max_decoded_pixels:,}")


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


def load_image_rgb(
    path: Path | str,
    draft_size_px: int | None = None,
    max_decoded_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS,
) -> Image.Image:
    """Open an image for a model: size checked from the header, decoded, EXIF orientation applied,
    alpha composited on white, converted to RGB.

    Args:
        path: the image file.
        draft_size_px: for JPEGs, let the decoder shrink by up to 8x while both sides stay at least
            this large (much faster for big photos a processor resizes anyway); None = full size.
        max_decoded_pixels: refuse images whose header declares more pixels; None = no limit of
            ours (for loaders whose stage screened every image first, see `image_screen`).

    Returns:
        A loaded RGB Pillow image.

    Raises:
        ImageLoadError: the file is missing, unreadable, empty, not an image, truncated or over
            the limit; `code` says which.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise make_load_error(path, "IMAGE_ZERO_BYTES")
    try:
        with warnings.catch_warnings():
            # Our own limit was checked from the header; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                check_decoded_size(opened, path, max_decoded_pixels)
                if draft_size_px is not None:
                    opened.draft("RGB", (draft_size_px, draft_size_px))
                opened.load()
                image = ImageOps.exif_transpose(opened) or opened
                return convert_to_rgb(image)
    except DECODE_ERRORS as err:
        if isinstance(err, ImageLoadError):
            raise
        raise make_load_error(path, classify_image_error(err), str(err)) from err


def read_upright_size(path: Path | str) -> tuple[int, int]:
    """(width, height) as `load_image_rgb` returns the image, from the header only (EXIF orientations
    5-8 turn the image by 90 degrees, so they swap the stored sides).

    Args:
        path: the image file.

    Returns:
        The upright (width, height) in pixels.
    """
    with Image.open(path) as opened:
        orientation = read_header_orientation(opened)
        width, height = opened.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_header_orientation(opened: Image.Image) -> int:
    """The EXIF orientation (1-8) known from an opened file's header, without decoding its pixels.

    Pillow's `getexif()` on a PNG decodes the whole image to look for an eXIf chunk after the
    pixels; the PNG spec puts eXIf before IDAT, where `open` has already read it into `info`.
    """
    if opened.format == "PNG" and "exif" not in opened.info:
        return 1
    return int(opened.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)


def _problem(facts: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    facts["problem"] = code
    facts["problem_message"] = message
    return facts


def _describe_header(facts: dict[str, Any], image: Image.Image) -> None:
    rawmode = image.tile[0][3] if image.tile else ""
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else str(rawmode)
    facts["bits16"] = image.mode.startswith("I;16") or ";16" in rawmode
    facts["alpha"] = image.mode in ALPHA_MODES or "transparency" in image.info
    facts["exif_orientation"] = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)


def _decode_and_hash(facts: dict[str, Any], image: Image.Image, quality: bool) -> dict[str, Any]:
    # Quality is measured at 224 px, so the JPEG decoder may shrink only down to that.
    draft_px = QUALITY_SIDE_PX if quality else HASH_DRAFT_PX
    try:
        image.draft("RGB" if image.mode != "L" else "L", (draft_px, draft_px))
        image.load()
    except DECODE_ERRORS as err:
        return _problem(facts, classify_image_error(err), str(err))
    upright = convert_to_rgb(ImageOps.exif_transpose(image) or image)
    facts["phash"] = str(imagehash.phash(upright))
    if quality:
        facts["quality"] = measure_quality(upright)
    return facts


def inspect_image(path: str, max_decoded_pixels: int, quality: bool = False) -> dict[str, Any]:
    """Facts about one image file for `data check`; never raises for a bad image.

    Args:
        path: absolute image path.
        max_decoded_pixels: above this many pixels the image is reported and not decoded.
        quality: also measure blur, exposure and contrast (`data/quality.py`) into `quality`.

    Returns:
        Dict with path, bytes, sha256, format, mode, width, height, bits16, alpha,
        exif_orientation, phash (hex), quality (when asked) and problem / problem_message (None when
        the image is fine).
    """
    facts: dict[str, Any] = {"path": path, "problem": None, "problem_message": None, "phash": None}
    file = Path(path)
    if not file.is_file():
        return _problem(facts, "IMAGE_MISSING", "no such file")
    try:
        data = file.read_bytes()
    except OSError as err:
        return _problem(facts, classify_image_error(err), str(err))
    facts["bytes"] = len(data)
    if not data:
        return _problem(facts, "IMAGE_ZERO_BYTES", "file is empty (0 bytes)")
    facts["sha256"] = hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            facts.update(format=image.format, mode=image.mode, width=image.width, height=image.height)
            check_decoded_size(image, path, max_decoded_pixels)
            _describe_header(facts, image)
        except ImageLoadError as err:
            return _problem(facts, err.code, str(err).removeprefix(f"{path}: "))
        except DECODE_ERRORS as err:
            return _problem(facts, classify_image_error(err), str(err))
        return _decode_and_hash(facts, image, quality)
