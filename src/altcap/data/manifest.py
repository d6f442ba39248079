"""The one internal dataset format: a JSONL manifest, one record per image.

Every importer writes it and every later stage reads it. Image paths are stored as given by the
importer: absolute, or relative to the manifest's own folder (so a dataset folder can be moved
together with its manifest).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


class ManifestRecord(BaseModel):
    """One image and everything known about it."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Image path, absolute or relative to the manifest's folder.")
    captions: list[str] = Field(default_factory=list, description="Reference captions, in source order.")
    prompt: str | None = Field(default=None, description="Instruction for this image; None = config default.")
    split: Split | None = Field(default=None, description="train, val or test; None until `data split`.")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Source ids and extras, e.g. `ocr_text` (text in the image), `source_id`, `context` "
        "(where the image appears) or `quality_flags` (written by `data check`).",
    )


class ManifestError(ValueError):
    """A manifest line that cannot be read; the message names file and line."""


def resolve_image(manifest_path: Path, record: ManifestRecord) -> Path:
    """Absolute path of a record's image (relative paths are relative to the manifest's folder)."""
    path = Path(record.image)
    return path if path.is_absolute() else (manifest_path.parent / path)


def read_manifest(path: Path, split: str | None = None) -> list[ManifestRecord]:
    """Read a manifest, optionally keeping one split.

    Args:
        path: the JSONL manifest.
        split: keep only records of this split; None keeps all.

    Returns:
        Records in file order.

    Raises:
        ManifestError: naming the file and line of the first unreadable record.
    """
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found; create one with `altcap data import`")
    records: list[ManifestRecord] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = ManifestRecord.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as err:
                raise ManifestError(f"{path}:{line_no}: not a manifest record: {err}") from err
            if split is None or record.split == split:
                records.append(record)
    return records


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write JSONL through a temp file + rename, so a crash never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_manifest(path: Path, records: Iterable[ManifestRecord]) -> None:
    """Write records as a manifest (atomically)."""
    write_jsonl_atomic(path, (r.model_dump(mode="json") for r in records))
