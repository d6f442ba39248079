"""Screen every image a run will open before any work starts, and report the bad ones by record.

Train and caption decode each listed image once here, through the same loader they use later
(`load_image_rgb`), so an unreadable file (missing, permission denied, empty, not an image,
truncated, over `max_decoded_pixels`) is found before a model loads, whichever path would have
read it later (feature cache, DataLoader workers, a resumed run): one error naming the file and
its manifest lines, or, with `skip_unreadable_images`, the file is left out and counted.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from altcap.data.images import ImageLoadError, load_image_rgb
from altcap.data.manifest import ManifestRecord, resolve_image

# JPEGs decode at 1/8 scale here: the whole entropy-coded stream is still read, so truncation and
# corruption are caught at a fraction of a full decode's cost.
SCREEN_DRAFT_PX = 64
# Below this many images one process is faster than starting a pool.
POOL_MIN_IMAGES = 256
SHOWN = 5


@dataclass(frozen=True)
class UnreadableImage:
    """An image a run cannot use, with where it is listed."""

    path: str
    code: str
    message: str
    records: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the loader's message (file, reason, fix) and the records listing the file."""
        where = f" (listed at {', '.join(self.records)})" if self.records else ""
        return f"{self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict for run reports."""
        return {**asdict(self), "records": list(self.records)}


def screen_image(path: str, max_decoded_pixels: int | None) -> tuple[str, str, str] | None:
    """Decode one image as the stages do; None when it is usable, else (path, code, message)."""
    try:
        load_image_rgb(path, draft_size_px=SCREEN_DRAFT_PX, max_decoded_pixels=max_decoded_pixels)
    except ImageLoadError as err:
        return path, err.code, str(err)
    return None


def screen_images(
    paths: list[str], max_decoded_pixels: int | None, workers: int | None = None
) -> list[tuple[str, str, str]]:
    """(path, code, message) for each unusable image among `paths` (deduplicated), in path order.

    Args:
        paths: image paths as the stage will open them.
        max_decoded_pixels: the stage's decode limit.
        workers: processes for large sets; None = up to 8, by CPU count.

    Returns:
        One tuple per unusable image.
    """
    unique = sorted(set(paths))
    screen = partial(screen_image, max_decoded_pixels=max_decoded_pixels)
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(unique) < POOL_MIN_IMAGES:
        results = list(map(screen, unique))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(screen, unique, chunksize=64))
    return [result for result in results if result is not None]


def find_manifest_lines(manifest: Path) -> dict[str, list[int]]:
    """Manifest line numbers per image path (resolved as the stages resolve it); bad lines are ignored."""
    lines: dict[str, list[int]] = {}
    with manifest.open(encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            try:
                record = ManifestRecord.model_validate(json.loads(line))
            except ValueError:
                continue
            lines.setdefault(str(resolve_image(manifest, record)), []).append(line_no)
    return lines


def screen_listed_images(
    paths: list[Path], max_decoded_pixels: int | None, manifest: Path | None = None
) -> list[UnreadableImage]:
    """Screen images and name the manifest lines that list each unusable one.

    Args:
        paths: the images a stage will open (as `resolve_image` gives them).
        max_decoded_pixels: the stage's decode limit.
        manifest: the manifest listing them, to name records by line; None for an image folder.

    Returns:
        The unusable images, in path order (empty when all are fine).
    """
    bad = screen_images([str(p) for p in paths], max_decoded_pixels)
    if not bad:
        return []
    lines = find_manifest_lines(manifest) if manifest is not None else {}
    return [
        UnreadableImage(path, code, message, tuple(f"{manifest}:{n}" for n in lines.get(path, [])))
        for path, code, message in bad
    ]


def describe_unreadable(unreadable: list[UnreadableImage], flag: str) -> str:
    """One error text for a stage: a line per image (the first few) and how to skip them instead."""
    shown = [f"  - {image.describe()}" for image in unreadable[:SHOWN]]
    if len(unreadable) > SHOWN:
        shown.append(f"  - ... and {len(unreadable) - SHOWN} more")
    return (
        f"{len(unreadable)} image(s) cannot be read:\n" + "\n".join(shown) + "\n  Fix or drop them "
        f"(`altcap data check` writes a clean manifest), or pass `{flag}` to leave them out and count them"
    )
