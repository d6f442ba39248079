"""Importers for a user's own data: CSV, JSONL, and a Hugging Face `imagefolder` with metadata.jsonl."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from altcap.data.configs import DataImportConfig
from altcap.data.import_common import (
    DataImportError,
    ImportResult,
    group_rows,
    list_image_files,
    normalize_split,
    place_image,
    read_text_lines,
)

CAPTION_FIELDS = ("caption", "captions", "text")
IMAGE_FIELDS = ("image", "file_name")
HF_SPLIT_DIRS = {"train": "train", "validation": "val", "val": "val", "dev": "val", "test": "test"}


def _pick_field(keys: list[str], wanted: str | None, options: tuple[str, ...], where: str, role: str) -> str:
    if wanted is not None:
        if wanted not in keys:
            raise DataImportError(
                f"{where}: no {role} field {wanted!r}; fields are {keys}; set caption_field"
            )
        return wanted
    for name in options:
        if name in keys:
            return name
    raise DataImportError(f"{where}: no {role} field; expected one of {list(options)}, found {keys}")


def _row_from_item(item: dict[str, Any], base: Path, cfg: DataImportConfig, where: str, line: int) -> dict:
    """One caption row (see `group_rows`) from a parsed CSV/JSONL item; other keys become metadata."""
    keys = list(item)
    image_key = _pick_field(keys, None, IMAGE_FIELDS, where, "image")
    caption_key = _pick_field(keys, cfg.caption_field, CAPTION_FIELDS, where, "caption")
    image = item[image_key]
    if not isinstance(image, str) or not image.strip():
        raise DataImportError(f"{where}: {image_key}={image!r} is empty; give each row an image path")
    known = {image_key, caption_key, "prompt", "split"}
    return {
        "image": place_image(base / image.strip(), cfg.out_dir),
        "caption": item[caption_key],
        "prompt": item.get("prompt") or None,
        "split": normalize_split(item.get("split"), where) or cfg.split,
        "line": line,
        "metadata": {k: v for k, v in item.items() if k not in known},
    }


def _expand_captions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A JSONL/HF row may hold a list of captions; make one row per caption so grouping is uniform."""
    expanded = []
    for row in rows:
        captions = row["caption"]
        if isinstance(captions, list):
            expanded.extend({**row, "caption": str(c)} for c in captions)
            if not captions:
                expanded.append({**row, "caption": None})
        else:
            expanded.append({**row, "caption": None if captions is None else str(captions)})
    return expanded


def import_csv(cfg: DataImportConfig) -> ImportResult:
    """CSV with a header: image, caption, optional prompt, optional split; rows of one image are grouped."""
    path = cfg.source or Path()
    if not path.is_file():
        raise DataImportError(f"{path}: CSV not found")
    result = ImportResult()
    lines = read_text_lines(path, result)
    reader = csv.DictReader(lines)
    rows = []
    for item in reader:
        where = f"{path}:{reader.line_num}"
        if None in item:
            result.note(
                "EXTRA_CELLS", path, f"row has more cells than the header: {item[None]!r}", reader.line_num
            )
            item.pop(None)
        rows.append(_row_from_item(item, cfg.images_dir or path.parent, cfg, where, reader.line_num))
    if reader.fieldnames is None:
        raise DataImportError(f"{path}: empty CSV; the first line must be a header such as image,caption")
    result.records = group_rows(rows, path, result)
    return result


def _read_jsonl_items(path: Path, result: ImportResult) -> list[tuple[int, dict[str, Any]]]:
    items = []
    for line_no, line in enumerate(read_text_lines(path, result), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataImportError(
                f"{path}:{line_no}: not valid JSON ({err.msg}); one object per line"
            ) from err
        if not isinstance(item, dict):
            raise DataImportError(f"{path}:{line_no}: expected a JSON object, got {type(item).__name__}")
        items.append((line_no, item))
    return items


def import_jsonl(cfg: DataImportConfig) -> ImportResult:
    """JSONL, one object per caption (or per image with a `captions` list); grouped by image."""
    path = cfg.source or Path()
    if not path.is_file():
        raise DataImportError(f"{path}: JSONL not found")
    result = ImportResult()
    base = cfg.images_dir or path.parent
    rows = [_row_from_item(item, base, cfg, f"{path}:{n}", n) for n, item in _read_jsonl_items(path, result)]
    result.records = group_rows(_expand_captions(rows), path, result)
    return result


def import_hf_imagefolder(cfg: DataImportConfig) -> ImportResult:
    """HF `imagefolder`: metadata.jsonl (file_name + caption/text) at the root or in train/validation/test."""
    # Read metadata.jsonl directly rather than through `datasets.load_dataset("imagefolder")`: that
    # decodes every image into an Arrow cache, while a manifest only needs names and text.
    root = cfg.source or Path()
    folders = [(root, None)] + [(root / d, s) for d, s in HF_SPLIT_DIRS.items() if (root / d).is_dir()]
    folders = [(f, s) for f, s in folders if (f / "metadata.jsonl").is_file()]
    if not folders:
        raise DataImportError(
            f"{root}: no metadata.jsonl here or in train/, validation/, test/; "
            "create one with a file_name and a caption field per line"
        )
    result = ImportResult()
    rows = []
    for folder, split in folders:
        meta = folder / "metadata.jsonl"
        for line_no, item in _read_jsonl_items(meta, result):
            row = _row_from_item(item, folder, cfg, f"{meta}:{line_no}", line_no)
            row["split"] = row["split"] or split
            rows.append(row)
        listed = {r["image"] for r in rows}
        for image in list_image_files(folder):
            if place_image(image, cfg.out_dir) not in listed:
                result.note(
                    "IMAGE_WITHOUT_CAPTIONS",
                    folder,
                    f"{image.name} is not in metadata.jsonl; kept uncaptioned",
                )
                rows.append(
                    {
                        "image": place_image(image, cfg.out_dir),
                        "caption": None,
                        "split": split,
                        "line": None,
                        "metadata": {},
                    }
                )
    result.records = group_rows(_expand_captions(rows), root, result)
    return result
