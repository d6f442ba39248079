"""Pieces every importer shares: the result it returns, path placement, tolerant text reading."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from altcap.data.manifest import SPLITS, ManifestRecord

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif"}
)
SPLIT_ALIASES = {"train": "train", "val": "val", "dev": "val", "validation": "val", "test": "test"}


class DataImportError(ValueError):
    """Source data that cannot be imported; the message names file, line/field, value and fix."""


@dataclass
class ImportResult:
    """What an importer found: the records plus everything it noticed, so nothing is silently lost."""

    records: list[ManifestRecord] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    notes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown by the CLI, kept in the report

    def note(self, code: str, file: Path | str, message: str, line: int | None = None, **extra: Any) -> None:
        """Record one observation (counted per code) for the import report."""
        self.counts[code] += 1
        self.notes.append({"code": code, "file": str(file), "line": line, "message": message, **extra})


def place_image(image: Path, out_dir: Path) -> str:
    """Manifest path of an image: relative to the manifest folder when it lives under it, else absolute.

    Args:
        image: the image path (absolute or relative to the current directory).
        out_dir: the folder the manifest is written to.

    Returns:
        The string to store in `ManifestRecord.image`.
    """
    image_abs = Path(os.path.abspath(image))
    out_abs = Path(os.path.abspath(out_dir))
    if image_abs.is_relative_to(out_abs):
        return image_abs.relative_to(out_abs).as_posix()
    return str(image_abs)


def relocate_record(record: ManifestRecord, from_dir: Path, to_dir: Path) -> ManifestRecord:
    """Copy of a record whose image path still resolves when the manifest moves from one folder to another."""
    path = Path(record.image)
    source = path if path.is_absolute() else from_dir / path
    return record.model_copy(update={"image": place_image(source, to_dir)})


def normalize_split(value: Any, where: str) -> str | None:
    """Map a split name (train/val/dev/validation/test, any case; empty = none) to the manifest's names.

    Raises:
        DataImportError: naming `where` and the value when the name is unknown.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    split = SPLIT_ALIASES.get(str(value).strip().lower())
    if split is None:
        raise DataImportError(
            f"{where}: split={value!r} is not a split; use one of {', '.join(SPLITS)} (or dev/validation) "
            "or leave it empty"
        )
    return split


def read_text_lines(path: Path, result: ImportResult) -> list[str]:
    """Lines of a text file; bytes that are not UTF-8 become U+FFFD and the line is noted, not dropped."""
    lines: list[str] = []
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(raw.decode("utf-8", errors="replace"))
                result.note(
                    "NOT_UTF8",
                    path,
                    "line is not valid UTF-8; bad bytes became U+FFFD (re-save as UTF-8)",
                    line_no,
                )
    return lines


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; errors name the file and position."""
    if not path.is_file():
        raise DataImportError(f"{path}: file not found; pass the annotation JSON file as SRC")
    try:
        return json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except json.JSONDecodeError as err:
        raise DataImportError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg}); is this the right file?"
        ) from err


def require_keys(data: Any, keys: tuple[str, ...], path: Path, what: str) -> None:
    """Fail with the missing keys and the keys present when `data` is not the expected JSON object."""
    if not isinstance(data, dict) or any(k not in data for k in keys):
        present = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataImportError(f"{path}: not a {what} file: needs keys {list(keys)}, found {present}")


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly inside a folder, sorted by name (empty when the folder is absent)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def group_rows(rows: list[dict[str, Any]], source: Path, result: ImportResult) -> list[ManifestRecord]:
    """Group caption rows (keys image_path, caption, prompt, split, line, metadata) into one record per image.

    The first row of an image fixes its prompt and split; a later row that disagrees is noted.
    """
    by_image: dict[str, ManifestRecord] = {}
    for row in rows:
        record = by_image.get(row["image"])
        if record is None:
            record = ManifestRecord(
                image=row["image"], prompt=row.get("prompt"), split=row.get("split"), metadata=row["metadata"]
            )
            by_image[row["image"]] = record
        else:
            for key, value in row["metadata"].items():  # later rows add keys; the first row's values win
                record.metadata.setdefault(key, value)
            for key in ("prompt", "split"):
                if row.get(key) is not None and row.get(key) != getattr(record, key):
                    result.note(
                        f"CONFLICTING_{key.upper()}",
                        source,
                        f"{row['image']}: {key}={row.get(key)!r} differs from the first row's "
                        f"{getattr(record, key)!r}; kept the first (make them agree)",
                        row["line"],
                    )
        if row.get("caption") is not None:
            record.captions.append(row["caption"])
    return list(by_image.values())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON report through a temp file + rename, so readers never see half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (undecodable bytes in a caption) cannot be UTF-8; escaped JSON still can.
        text = json.dumps(data, indent=2, ensure_ascii=True, default=str).encode("ascii")
    tmp.write_bytes(text + b"\n")
    os.replace(tmp, path)
