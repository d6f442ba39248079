"""The images a caption run covers: collected from a manifest split or a folder, screened for
unreadable files before any model loads, and ordered so batches need little padding."""

from __future__ import annotations

import logging

from PIL import UnidentifiedImageError

from altcap.data.context import read_context
from altcap.data.image_screen import describe_unreadable, screen_listed_images
from altcap.data.images import read_upright_size
from altcap.data.import_common import IMAGE_SUFFIXES
from altcap.data.manifest import read_manifest, resolve_image
from altcap.infer.batches import CaptionItem
from altcap.infer.captions_file import provenance_path
from altcap.infer.config import CaptionConfig

logger = logging.getLogger(__name__)


class CaptionError(ValueError):
    """Bad input for `altcap caption`; the message names the file or field and the fix."""


def collect_items(cfg: CaptionConfig) -> list[CaptionItem]:
    """The images to caption, from the manifest split or the folder; missing files are an error.

    Args:
        cfg: the caption config (exactly one of manifest / images is set).

    Returns:
        Items in source order, truncated to `cfg.limit`.
    """
    if cfg.manifest is not None:
        records = read_manifest(cfg.manifest, cfg.split)
        if not records:
            raise CaptionError(f"{cfg.manifest}: no records with split={cfg.split!r}; check --split")
        items = [
            CaptionItem(r.image, resolve_image(cfg.manifest, r), r.prompt, read_context(r)) for r in records
        ]
    else:
        folder = cfg.images
        if not folder.is_dir():
            raise CaptionError(f"images={str(folder)!r}: folder not found")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise CaptionError(
                f"images={str(folder)!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        items = [CaptionItem(p.relative_to(folder).as_posix(), p) for p in paths]
    items = items[: cfg.limit] if cfg.limit else items
    missing = [str(item.path) for item in items if not item.path.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CaptionError(
            f"{len(missing)} image(s) not found: {shown}; fix the paths or run `altcap data check`"
        )
    return items


def screen_items(cfg: CaptionConfig, items: list[CaptionItem]) -> tuple[list[CaptionItem], list[dict]]:
    """Decode every image once before the model loads (the shared loader); unreadable ones stop the run
    with their files and manifest lines, or with `skip_unreadable_images` are left out and returned.

    Raises:
        CaptionError: naming each unreadable image, unless `cfg.skip_unreadable_images`.
    """
    bad = screen_listed_images([item.path for item in items], cfg.max_decoded_pixels, cfg.manifest)
    if not bad:
        return items, []
    if not cfg.skip_unreadable_images:
        raise CaptionError(describe_unreadable(bad, "--set skip_unreadable_images=true"))
    logger.warning(
        "skip_unreadable_images: left out %d unreadable image(s), listed in %s: %s",
        len(bad), provenance_path(cfg.out).name, "; ".join(image.describe() for image in bad[:3]),
    )
    key_of = {str(item.path): item.key for item in items}  # the join key `altcap evaluate` reports
    dropped = {image.path for image in bad}
    unreadable = [{"image": key_of[image.path], **image.to_dict()} for image in bad]
    return [item for item in items if str(item.path) not in dropped], unreadable


def order_for_throughput(items: list[CaptionItem]) -> list[CaptionItem]:
    """Group same-prompt, same-shape images so a batch needs no prompt padding and few image tiles.

    Only the image header is read (Pillow opens lazily), so this costs far less than decoding; the
    shape is the upright one the loader gives (a sideways-stored phone photo is portrait).
    """

    def sort_key(item: CaptionItem) -> tuple[str, float, str]:
        try:
            width, height = read_upright_size(item.path)
        except (OSError, UnidentifiedImageError) as err:
            raise CaptionError(f"{item.path}: not a readable image ({err}); run `altcap data check`") from err
        return (item.prompt or "", round(width / max(height, 1), 1), item.key)

    return sorted(items, key=sort_key)
