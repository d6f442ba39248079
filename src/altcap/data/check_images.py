"""Image rules of `data check`: decode every image in a process pool, then turn facts into findings."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from altcap.cli_output import progress_bar
from altcap.data.findings import Finding, make_finding
from altcap.data.images import GREYSCALE_MODES, inspect_image
from altcap.data.import_common import IMAGE_SUFFIXES
from altcap.data.quality import QUALITY_CODES, describe_quality, flag_quality

# Big enough that inter-process overhead is small next to ~1 ms of decoding per image, small enough
# that the progress bar moves smoothly.
CHUNK_IMAGES = 64


def inspect_images(
    paths: list[str],
    max_decoded_pixels: int,
    workers: int,
    quality: bool = False,
) -> dict[str, dict[str, Any]]:
    """Inspect every image (see `inspect_image`), in `workers` processes, with a progress bar.

    Args:
        paths: absolute image paths (unique).
        max_decoded_pixels: larger images are reported, not decoded.
        workers: processes to use; 1 runs in this process.
        quality: also measure blur, exposure and contrast.

    Returns:
        Facts per path.
    """
    inspect = partial(inspect_image, max_decoded_pixels=max_decoded_pixels, quality=quality)
    facts: dict[str, dict[str, Any]] = {}
    with progress_bar(len(paths), "checking images", unit="img") as bar:
        if workers == 1 or len(paths) < 2 * CHUNK_IMAGES:
            results = map(inspect, paths)
            for result in results:
                facts[result["path"]] = result
                bar.update(1)
            return facts
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(inspect, paths, chunksize=CHUNK_IMAGES):
                facts[result["path"]] = result
                bar.update(1)
    return facts


def _mode_findings(facts: dict[str, Any], file: str, line: int) -> list[Finding]:
    mode = facts.get("mode")
    described = f"{facts['format']} {mode} {facts['width']}x{facts['height']}"
    checks = [
        ("IMAGE_CMYK", mode == "CMYK"),
        ("IMAGE_16BIT", facts.get("bits16")),
        ("IMAGE_PALETTE", mode == "P"),
        ("IMAGE_ALPHA", facts.get("alpha")),
        ("IMAGE_GREYSCALE", mode in GREYSCALE_MODES),
    ]
    findings = [
        make_finding(code, file, line, "image", f"{described}: converted to RGB on load")
        for code, hit in checks
        if hit
    ]
    orientation = facts.get("exif_orientation", 1)
    if orientation != 1:
        findings.append(
            make_finding(
                "IMAGE_EXIF_ORIENTATION",
                file,
                line,
                "image",
                f"EXIF orientation {orientation}: applied on load",
            )
        )
    return findings


def _size_findings(
    facts: dict[str, Any], file: str, line: int, min_side_px: int, max_aspect: float
) -> list[Finding]:
    width, height = facts["width"], facts["height"]
    findings = []
    if min(width, height) < min_side_px:
        findings.append(
            make_finding(
                "IMAGE_TOO_SMALL",
                file,
                line,
                "image",
                f"{width}x{height} px; shorter side under {min_side_px} px",
            )
        )
    if max(width, height) > max_aspect * max(1, min(width, height)):
        findings.append(
            make_finding(
                "IMAGE_EXTREME_ASPECT",
                file,
                line,
                "image",
                f"{width}x{height} px; aspect ratio over {max_aspect:g}",
            )
        )
    return findings


def image_findings(
    facts: dict[str, Any], manifest_file: str, line: int, n_captions: int, limits: tuple[int, float]
) -> list[Finding]:
    """Findings for one record's image from its facts.

    Args:
        facts: `inspect_image` output.
        manifest_file: the manifest path.
        line: the record's manifest line.
        n_captions: how many captions the record has (named when the image is missing).
        limits: (min_image_side_px, max_aspect_ratio).

    Returns:
        Findings; an error among them means the record is dropped from the clean manifest.
    """
    if facts["problem"] is not None:
        message = f"{facts['path']}: {facts['problem_message']}"
        if facts["problem"] == "IMAGE_MISSING":
            message += f"; its {n_captions} caption(s) have no image"
        return [make_finding(facts["problem"], manifest_file, line, "image", message)]
    findings = _mode_findings(facts, manifest_file, line)
    findings += _size_findings(facts, manifest_file, line, *limits)
    return findings + _quality_findings(facts, manifest_file, line)


def _quality_findings(facts: dict[str, Any], file: str, line: int) -> list[Finding]:
    stats = facts.get("quality")
    if stats is None:
        return []
    return [
        make_finding(QUALITY_CODES[flag], file, line, "image", describe_quality(flag, stats))
        for flag in flag_quality(stats)
    ]


def find_unlisted_images(listed: set[str], manifest_file: str) -> list[Finding]:
    """Image files that sit beside listed images but are not in the manifest (images left out by mistake)."""
    folders = {os.path.dirname(path) for path in listed}
    findings = []
    for folder in sorted(folders):
        if not os.path.isdir(folder):
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = os.path.join(folder, entry.name)
            if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and path not in listed:
                findings.append(
                    make_finding(
                        "IMAGE_UNLISTED",
                        path,
                        None,
                        "image",
                        f"{path} is beside listed images but not in {manifest_file}",
                    )
                )
    return findings
