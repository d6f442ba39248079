"""Resume bookkeeping of a captions file: which images it already holds (refusing one written with
other settings), cutting a torn last line, and the provenance runs recorded beside it."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from altcap.infer.captions_file import provenance_path, read_captions
from altcap.infer.config import CaptionConfig
from altcap.infer.items import CaptionError
from altcap.provenance import build_provenance


def _same_source(given: str | None, stored: str | None) -> bool:
    if given == stored:
        return True
    if given is None or stored is None:
        return False
    # A folder given once relative and once absolute is the same model.
    return Path(given).exists() and Path(given).resolve() == Path(stored).resolve()


def drop_torn_last_line(path: Path) -> int:
    """Cut a half-written last line (a run killed mid-write); returns the bytes removed.

    Complete lines always end in a newline (append_captions writes whole lines), so an unterminated
    tail that is not valid JSON can only be a torn write; everything before it is kept.
    """
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    try:
        json.loads(data[keep:])
    except ValueError:
        with path.open("r+b") as handle:
            handle.truncate(keep)
        warnings.warn(f"{path}: dropped a half-written last line ({len(data) - keep} bytes)", stacklevel=2)
        return len(data) - keep
    with path.open("ab") as handle:  # a complete record missing only its newline: end the line
        handle.write(b"\n")
    return 0


def find_done_images(cfg: CaptionConfig) -> set[str]:
    """Images already in `cfg.out` (empty if it does not exist); refuses a file made with other settings."""
    if not cfg.out.exists():
        return set()
    drop_torn_last_line(cfg.out)
    settings = cfg.record_settings()
    done: set[str] = set()
    for line_no, record in enumerate(read_captions(cfg.out), start=1):
        differences = []
        if not _same_source(cfg.model.model_id, record.model_id):
            differences.append(f"model_id {record.model_id!r} (now {cfg.model.model_id!r})")
        if not _same_source(cfg.model.adapter, record.adapter):
            differences.append(f"adapter {record.adapter!r} (now {cfg.model.adapter!r})")
        differences += [
            f"generation.{key}={record.generation.get(key)!r} (now {settings.get(key)!r})"
            for key in sorted(set(record.generation) | set(settings))
            if record.generation.get(key) != settings.get(key)
        ]
        if differences:
            raise CaptionError(
                f"{cfg.out}: record {line_no} was made with {'; '.join(differences)}; captions from "
                "different settings must not be mixed: pass another --out, or restore the original settings "
                "to resume"
            )
        done.add(record.image)
    return done


def write_provenance(cfg: CaptionConfig, family_name: str, run: dict[str, Any]) -> None:
    """Write provenance beside the output; earlier runs that appended to the same file are kept."""
    path = provenance_path(cfg.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    if path.is_file():
        runs = [
            r
            for r in json.loads(path.read_text(encoding="utf-8")).get("runs", [])
            if r.get("id") != run["id"]
        ]
    provenance = build_provenance(
        cfg,
        cfg.model.model_id,
        cfg.manifest,
        adapter=cfg.model.adapter,
        family=family_name,
        generation=cfg.record_settings(),
        images_folder=str(cfg.images) if cfg.images else None,
        runs=[*runs, run],
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    os.replace(tmp, path)
