"""The captions file `altcap caption` writes and `altcap evaluate` / `altcap study` read.

JSONL, one record per image. Kept free of torch so the study and metrics stages can read it on a
small box.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class CaptionRecord(BaseModel):
    """One generated caption and how it was made."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    image: str = Field(description="The image path exactly as in the manifest (the join key).")
    caption: str = Field(description="The generated caption.")
    model_id: str = Field(description="Hub id or folder of the base model.")
    adapter: str | None = Field(default=None, description="LoRA adapter folder; None for the base model.")
    generation: dict[str, Any] = Field(default_factory=dict, description="Generation settings used.")


class CaptionsFileError(ValueError):
    """A captions file line that cannot be read; names file and line."""


def read_captions(path: Path) -> list[CaptionRecord]:
    """Read a captions JSONL file.

    Raises:
        CaptionsFileError: naming the file and line of an unreadable record, or a non-UTF-8 file.
    """
    if not path.is_file():
        raise CaptionsFileError(f"{path}: captions file not found; write one with `altcap caption`")
    records: list[CaptionRecord] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CaptionsFileError(f"{path}: not UTF-8 ({err}); re-save it as UTF-8") from err
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(CaptionRecord.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as err:
            raise CaptionsFileError(f"{path}:{line_no}: not a caption record: {err}") from err
    return records


def append_captions(path: Path, records: list[CaptionRecord]) -> None:
    """Append records and fsync, so an interrupted run keeps every caption already written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def provenance_path(out: Path) -> Path:
    """Where the provenance of a captions file lives: `<out>.provenance.json` beside it."""
    return out.with_name(out.name + ".provenance.json")
