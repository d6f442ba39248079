"""Configs of the data stage: `data import`, `data check` and `data split`.

Each CLI flag of `altcap data ...` maps to exactly one field here; `--set field=value` reaches all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from altcap.config import StageConfig
from altcap.data.image_settings import DEFAULT_MAX_DECODED_PIXELS, MAX_DECODED_PIXELS_HELP
from altcap.data.manifest import Split

ImportFormat = Literal["flickr8k", "coco", "karpathy", "vizwiz", "csv", "jsonl", "hf-imagefolder"]
IMPORT_FORMATS: tuple[str, ...] = ImportFormat.__args__  # type: ignore[attr-defined]


class DataImportConfig(StageConfig):
    """`altcap data import FORMAT SRC --out DIR`."""

    format: ImportFormat = Field(default="flickr8k", description="Source dataset format.")
    source: Path | None = Field(
        default=None,
        description="Dataset folder (flickr8k, hf-imagefolder) or annotation file (coco, karpathy, "
        "vizwiz, csv, jsonl).",
    )
    out_dir: Path = Field(
        default=Path("altcap-data"), description="Folder for manifest.jsonl + import_report.json."
    )
    images_dir: Path | None = Field(
        default=None,
        description="Folder the source's image names are relative to; None = the usual place for the "
        "format (flickr8k: SRC/Images; others: the annotation file's folder).",
    )
    split: Split | None = Field(
        default=None,
        description="Split given to every record of a one-split file (coco, vizwiz); None = leave unset "
        "(csv/jsonl/karpathy/flickr8k carry their own splits).",
    )
    caption_field: str | None = Field(
        default=None,
        description="csv/jsonl/hf-imagefolder column holding the caption; None = first of caption, "
        "captions, text.",
    )
    include_rejected: bool = Field(
        default=False, description="vizwiz: keep captions flagged is_rejected (they are always counted)."
    )
    include_precanned: bool = Field(
        default=False, description="vizwiz: keep captions flagged is_precanned (they are always counted)."
    )
    overwrite: bool = Field(default=False, description="Replace an existing OUT/manifest.jsonl.")


class DataCheckConfig(StageConfig):
    """`altcap data check [MANIFEST] --out DIR [--strict]`."""

    manifest: Path | None = Field(default=None, description="Manifest to check; None = the embedded sample.")
    out_dir: Path = Field(
        default=Path("altcap-check"), description="Folder for check_report.json + manifest.clean.jsonl."
    )
    strict: bool = Field(
        default=False,
        description="Exit 1 when any warning or error is found, not only when records are dropped.",
    )
    workers: int = Field(default=2, ge=1, le=64, description="Processes that decode and hash images.")
    check_images: bool = Field(
        default=True, description="Open, decode and hash every image (False = captions only)."
    )
    max_decoded_pixels: int = Field(
        default=DEFAULT_MAX_DECODED_PIXELS, gt=0, description=MAX_DECODED_PIXELS_HELP
    )
    quality_flags: bool = Field(
        default=True,
        description="Flag blurry, under-/over-exposed and low-contrast photos (info findings, and "
        "metadata.quality_flags in the clean manifest); thresholds in src/altcap/data/quality.py.",
    )
    min_image_side_px: int = Field(default=32, ge=1, description="Warn about images with a shorter side.")
    max_aspect_ratio: float = Field(default=10.0, gt=1, description="Warn above this long/short side ratio.")
    max_caption_chars: int = Field(default=500, gt=0, description="Warn about longer captions.")
    max_context_chars: int = Field(
        default=300, gt=0, description="Warn about a longer `context` (where the image appears)."
    )
    near_duplicate_bits: int = Field(
        default=4,
        ge=0,
        le=32,
        description="Perceptual hashes (64 bits) at most this many bits apart are near-duplicates; 0 = off.",
    )


class DataSplitConfig(StageConfig):
    """`altcap data split MANIFEST --out DIR`."""

    manifest: Path | None = Field(default=None, description="Manifest to split (required).")
    out_dir: Path = Field(
        default=Path("altcap-split"), description="Folder for manifest.jsonl + split_report.json."
    )
    seed: int = Field(default=0, description="Seed of the deterministic group shuffle.")
    val_fraction: float = Field(default=0.1, ge=0, lt=1, description="Share of newly split images for val.")
    test_fraction: float = Field(default=0.1, ge=0, lt=1, description="Share of newly split images for test.")
    resplit: bool = Field(default=False, description="Ignore existing splits and split every image anew.")
    check_report: Path | None = Field(
        default=None,
        description="check_report.json from `data check`: its duplicate groups are kept in one split.",
    )
    overwrite: bool = Field(default=False, description="Replace an existing OUT/manifest.jsonl.")

    @model_validator(mode="after")
    def _check_fractions(self) -> DataSplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction={self.val_fraction} + test_fraction={self.test_fraction} must be < 1 "
                "so some images stay in train; lower one of them"
            )
        return self
