"""`run_data_import`: one format's importer -> OUT/manifest.jsonl + OUT/import_report.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from altcap.cli_output import progress_bar
from altcap.data.configs import DataImportConfig
from altcap.data.formats_public import import_coco, import_flickr8k, import_karpathy, import_vizwiz
from altcap.data.formats_user import import_csv, import_hf_imagefolder, import_jsonl
from altcap.data.import_common import DataImportError, ImportResult, write_json_atomic
from altcap.data.manifest import resolve_image, write_manifest
from altcap.provenance import build_provenance

IMPORTERS: dict[str, Callable[[DataImportConfig], ImportResult]] = {
    "flickr8k": import_flickr8k,
    "coco": import_coco,
    "karpathy": import_karpathy,
    "vizwiz": import_vizwiz,
    "csv": import_csv,
    "jsonl": import_jsonl,
    "hf-imagefolder": import_hf_imagefolder,
}


def _summarize(result: ImportResult) -> dict[str, Any]:
    splits: dict[str, int] = {}
    for record in result.records:
        splits[str(record.split)] = splits.get(str(record.split), 0) + 1
    return {
        "records": len(result.records),
        "captions": sum(len(r.captions) for r in result.records),
        "records_per_split": splits,
        **dict(sorted(result.counts.items())),
    }


def note_missing_images(result: ImportResult, manifest_path: Path, source: Path) -> list[str]:
    """Note each image the source names but the folder lacks; returns the warning lines to show."""
    missing = []
    # Import's per-image work (a file system look-up each): slow on network drives and large sets.
    with progress_bar(len(result.records), "importing", unit="img") as bar:
        for record in result.records:
            if not resolve_image(manifest_path, record).is_file():
                missing.append(record.image)
            bar.update(1)
    for image in missing:
        result.note("IMAGE_NOT_FOUND", source, f"{image}: named in the source, but no such file")
    if not missing:
        return []
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return [
        f"{len(missing)} of {len(result.records)} image(s) named in {source} are not in the folder: {shown}; "
        "check --images-dir (or copy the files), then run `altcap data check`"
    ]


def run_data_import(cfg: DataImportConfig) -> dict[str, Any]:
    """Import a dataset into the manifest format.

    Args:
        cfg: the import config (format, source, out_dir, ...).

    Returns:
        The import report (also written to OUT/import_report.json).

    Raises:
        DataImportError: the source is missing or malformed, or OUT/manifest.jsonl exists without overwrite.
    """
    if cfg.source is None:
        raise DataImportError("source: not set; pass SRC (a dataset folder or annotation file)")
    if not cfg.source.exists():
        raise DataImportError(f"{cfg.source}: not found; pass an existing dataset folder or annotation file")
    manifest_path = cfg.out_dir / "manifest.jsonl"
    if manifest_path.exists() and not cfg.overwrite:
        raise DataImportError(f"{manifest_path}: already exists; choose another --out or pass --overwrite")
    if manifest_path.resolve() == cfg.source.resolve():
        raise DataImportError(f"{manifest_path}: is the source itself; choose another --out")
    result = IMPORTERS[cfg.format](cfg)
    warnings = result.warnings + note_missing_images(result, manifest_path, cfg.source)
    write_manifest(manifest_path, result.records)
    report = {
        "format": cfg.format,
        "source": str(cfg.source),
        "manifest": str(manifest_path),
        "counts": _summarize(result),
        "warnings": warnings,
        "notes": result.notes,
        "provenance": build_provenance(cfg, manifest=manifest_path),
    }
    write_json_atomic(cfg.out_dir / "import_report.json", report)
    return report
