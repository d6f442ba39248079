"""The memo's sample descriptions: images picked by a stated rule, their captions and thumbnails.

The rule is fixed in code (never chosen after looking at the captions), so the memo cannot be
cherry-picked: the images at the 10th, 50th and 90th percentile of the per-image CIDEr-D change.
Thumbnails are copied into the memo folder so the memo stays self-contained; an image that cannot
be found or read gets a note in its table cell instead of failing the memo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE_RULE = (
    "the images at the first decile, the median and the ninth decile of the per-image CIDEr-D change "
    "(fine-tuned minus base), so bad, typical and good cases all appear"
)
FALLBACK_RULE = "no per-image CIDEr-D available: the first images in alphabetical order"
THUMBNAIL_PX = 160
CASE_LABELS = ("worst tenth (first decile)", "typical (median)", "best tenth (ninth decile)")


def pick_samples(per_image: list[dict[str, Any]], metric: str = "CIDEr-D") -> tuple[list[str], str]:
    """Images at the 10th / 50th / 90th percentile of the per-image metric change, and the rule used.

    Args:
        per_image: per_image.jsonl rows (system, image, metric values).
        metric: the metric ranked on.

    Returns:
        (images, rule sentence); no images when fewer than 3 have the metric for both systems.
    """
    by_system: dict[str, dict[str, float]] = {}
    for row in per_image:
        if row.get(metric) is not None:
            by_system.setdefault(row["system"], {})[row["image"]] = row[metric]
    base, tuned = by_system.get("base", {}), by_system.get("finetuned", {})
    common = sorted(set(base) & set(tuned), key=lambda im: (tuned[im] - base[im], im))
    if len(common) < 3:
        return [], FALLBACK_RULE
    picks = [common[round(q * (len(common) - 1))] for q in (0.1, 0.5, 0.9)]
    return list(dict.fromkeys(picks)), SAMPLE_RULE


def find_image_file(image: str, search_dirs: list[Path]) -> Path | None:
    """The image file: the path itself when absolute, else the first folder that holds it.

    Args:
        image: the image path as written in per_image.jsonl / the captions file (manifest style).
        search_dirs: folders relative paths may start from (the manifest's folder first).

    Returns:
        The existing file, or None.
    """
    path = Path(image)
    candidates = [path] if path.is_absolute() else [folder / path for folder in search_dirs]
    return next((c for c in candidates if c.is_file()), None)


def write_thumbnail(source: Path, target: Path, size_px: int = THUMBNAIL_PX) -> str | None:
    """Save a JPEG thumbnail (longest side size_px); returns why it failed, or None on success.

    The image comes through the loader every stage shares, so the memo shows it as the model saw
    it: upright (EXIF orientation), transparency on white, the decode limit applied.
    """
    from altcap.data.images import ImageLoadError, load_image_rgb

    try:
        image = load_image_rgb(source, draft_size_px=size_px)
        image.thumbnail((size_px, size_px))
        image.save(target, "JPEG", quality=85)
    except (ImageLoadError, OSError) as err:
        reason = err.code if isinstance(err, ImageLoadError) else type(err).__name__
        return f"image not readable ({reason})"
    return None


def collect_captions(
    per_image: list[dict[str, Any]], captions: dict[str, dict[str, str]]
) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], Any]]:
    """Captions per system and image (--captions files first, then per_image.jsonl) and CIDEr-D scores."""
    merged = {system: dict(by_image) for system, by_image in captions.items()}
    scores: dict[tuple[str, str], Any] = {}
    for row in per_image:
        if row.get("caption") is not None:
            merged.setdefault(row["system"], {}).setdefault(row["image"], row["caption"])
        scores[(row["system"], row["image"])] = row.get("CIDEr-D")
    return merged, scores


def build_samples(
    per_image: list[dict[str, Any]],
    captions: dict[str, dict[str, str]],
    search_dirs: list[Path],
    out_dir: Path | None,
) -> tuple[list[dict[str, Any]], str]:
    """Sample rows chosen by `pick_samples`, with captions, CIDEr-D and a thumbnail in out_dir.

    Args:
        per_image: per_image.jsonl rows.
        captions: system -> image -> caption from --captions files (may be empty).
        search_dirs: folders relative image paths may start from.
        out_dir: the memo folder thumbnails are written to (None: no thumbnails).

    Returns:
        (rows with image, name, case, base, finetuned, cider_base, cider_finetuned, thumbnail, note; rule).
    """
    images, rule = pick_samples(per_image)
    merged, scores = collect_captions(per_image, captions)
    labels = CASE_LABELS if len(images) == len(CASE_LABELS) else ("",) * len(images)
    if not images:
        images = sorted(set(merged.get("base", {})) & set(merged.get("finetuned", {})))[:3]
        labels = ("",) * len(images)
    rows = []
    for k, image in enumerate(images, start=1):
        thumbnail, note = attach_thumbnail(image, search_dirs, out_dir, f"sample_{k}.jpg")
        rows.append(
            {
                "image": image,
                "name": Path(image).name,
                "case": labels[k - 1],
                "base": merged.get("base", {}).get(image, ""),
                "finetuned": merged.get("finetuned", {}).get(image, ""),
                "cider_base": scores.get(("base", image)),
                "cider_finetuned": scores.get(("finetuned", image)),
                "thumbnail": thumbnail,
                "note": note,
            }
        )
    return rows, rule


def attach_thumbnail(
    image: str, search_dirs: list[Path], out_dir: Path | None, file_name: str
) -> tuple[str | None, str]:
    """(thumbnail file name inside out_dir or None, note for the reader when there is none)."""
    if out_dir is None:
        return None, "no thumbnail"
    source = find_image_file(image, search_dirs)
    if source is None:
        return None, "image file not found"
    problem = write_thumbnail(source, out_dir / file_name)
    return (None, problem) if problem else (file_name, "")
