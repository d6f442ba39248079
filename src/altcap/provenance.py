"""Provenance stamped into every artifact: resolved config, model id, data hash, versions; and the
rule that an artifact folder never overwrites what is already there."""

from __future__ import annotations

import hashlib
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from altcap import __version__

_TRACKED_PACKAGES = ("torch", "transformers", "peft", "accelerate", "pycocoevalcap", "numpy")


def require_empty_folder(folder: Path) -> None:
    """Refuse to write into a folder that already holds files (nothing a user has is overwritten).

    Raises:
        FileExistsError: naming the folder and what to pass instead.
    """
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder}: folder is not empty; pass a new --out folder (nothing was overwritten)"
        )


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so large files do not sit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose behaviour changes results (absent ones omitted)."""
    versions = {"altcap": __version__, "python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_provenance(
    config: BaseModel | None = None,
    model_id: str | None = None,
    manifest: Path | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A JSON-ready provenance block.

    Args:
        config: the stage's resolved config.
        model_id: hub id or local folder of the model used, if any.
        manifest: the data manifest the artifact was made from, hashed so a changed dataset shows.
        **extra: stage-specific fields (adapter path, seed, ...).

    Returns:
        Dict with created_at, versions, command line, config, model_id and manifest_sha256.
    """
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "argv": sys.argv,
        "config": config.model_dump(mode="json") if config is not None else None,
        "model_id": model_id,
        "manifest": str(manifest) if manifest else None,
        "manifest_sha256": sha256_file(manifest) if manifest and manifest.is_file() else None,
        **extra,
    }
