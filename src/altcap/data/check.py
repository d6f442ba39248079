"""`run_data_check`: find every problem in a manifest, write check_report.json + manifest.clean.jsonl.

The source manifest and images are only read. Errors are dropped from the clean manifest (each drop
listed in the report); warnings and infos are kept.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from altcap.data.check_captions import check_record_captions, find_repeated_captions
from altcap.data.check_images import find_unlisted_images, image_findings, inspect_images
from altcap.data.configs import DataCheckConfig
from altcap.data.context import check_record_context
from altcap.data.duplicates import ImageEntry, duplicate_findings, group_duplicates
from altcap.data.findings import SEVERITY_ORDER, Finding, count_findings, make_finding
from altcap.data.import_common import relocate_record, write_json_atomic
from altcap.data.manifest import ManifestError, ManifestRecord, resolve_image, write_manifest
from altcap.data.quality import QUALITY_CODES
from altcap.data.sample import sample_manifest
from altcap.provenance import build_provenance

Lines = list[tuple[int, ManifestRecord]]


def read_manifest_tolerant(path: Path) -> tuple[Lines, list[Finding]]:
    """Every readable record with its line number, and a finding for each line that is not a record.

    Unlike `read_manifest`, a bad line (or bytes that are not UTF-8) does not stop the check.
    """
    records: Lines = []
    findings: list[Finding] = []
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            try:
                records.append((line_no, ManifestRecord.model_validate(json.loads(text))))
            except (json.JSONDecodeError, ValidationError) as err:
                reason = (
                    str(err).splitlines()[0] if isinstance(err, json.JSONDecodeError) else _first_error(err)
                )
                findings.append(
                    make_finding(
                        "MANIFEST_BAD_LINE",
                        str(path),
                        line_no,
                        "-",
                        f"not a manifest record ({reason}): {text[:120]!r}",
                    )
                )
    return records, findings


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'record'}: {first['msg']}"


def _drop_repeated_images(records: Lines, manifest: Path) -> tuple[Lines, list[Finding], dict[int, str]]:
    """Keep the first record of each image path; one error per repeated image names every line
    listing it and the count, and drops all but the first. Returns kept, findings, abs paths."""
    lines_of: dict[str, list[tuple[int, ManifestRecord]]] = {}
    for line, record in records:
        lines_of.setdefault(os.path.abspath(resolve_image(manifest, record)), []).append((line, record))
    kept = [(line, record) for line, record in records if lines_of[_abs(manifest, record)][0][0] == line]
    paths = {line: _abs(manifest, record) for line, record in kept}
    findings = []
    for listed in lines_of.values():
        if len(listed) < 2:
            continue
        numbers = [line for line, _ in listed]
        dropped = sum(len(record.captions) for _, record in listed[1:])
        message = (
            f"{listed[0][1].image} is listed {len(listed)} times, on lines {', '.join(map(str, numbers))}; "
            f"kept line {numbers[0]}, dropped the others ({dropped} caption(s))"
        )
        finding = make_finding("IMAGE_LISTED_TWICE", str(manifest), numbers[1], "image", message)
        finding.lines = numbers
        findings.append(finding)
    return kept, findings, paths


def _abs(manifest: Path, record: ManifestRecord) -> str:
    return os.path.abspath(resolve_image(manifest, record))


def _check_images(
    cfg: DataCheckConfig, manifest: Path, records: Lines, paths: dict[int, str]
) -> tuple[list[Finding], list[dict[str, Any]], int]:
    """Image, duplicate and unlisted-image findings; returns findings, duplicate groups, images checked."""
    facts = inspect_images(list(paths.values()), cfg.max_decoded_pixels, cfg.workers, cfg.quality_flags)
    limits = (cfg.min_image_side_px, cfg.max_aspect_ratio)
    findings: list[Finding] = []
    entries: list[ImageEntry] = []
    for line, record in records:
        fact = facts[paths[line]]
        findings += image_findings(fact, str(manifest), line, len(record.captions), limits)
        if fact["problem"] is None:
            entries.append(ImageEntry(line, paths[line], record.split, fact["sha256"], fact["phash"]))
    groups = group_duplicates(entries, cfg.near_duplicate_bits)
    dup_findings, report_groups = duplicate_findings(entries, groups, str(manifest))
    findings += dup_findings + find_unlisted_images(set(paths.values()), str(manifest))
    return findings, report_groups, len(facts)


def _quality_flags_by_line(findings: list[Finding]) -> dict[int, list[str]]:
    flag_of = {code: flag for flag, code in QUALITY_CODES.items()}
    quality: dict[int, list[str]] = {}
    for f in findings:
        if f.code in flag_of and f.line is not None:
            quality.setdefault(f.line, []).append(flag_of[f.code])
    return quality


def _build_clean(
    records: Lines, findings: list[Finding], with_quality: bool = False
) -> tuple[list[ManifestRecord], list[dict[str, Any]]]:
    """The clean records (errors removed; with `with_quality`, each with `metadata.quality_flags`)
    and the list of every removal."""
    quality = _quality_flags_by_line(findings)
    errors = [f for f in findings if f.severity == "error" and f.line is not None]
    drop_record = {f.line: f.code for f in errors if not f.field.startswith("captions[") and not f.lines}
    # A repeated image's one finding covers every line listing it; all but the first go.
    drop_record |= {line: f.code for f in errors if f.lines for line in f.lines[1:]}
    drop_caption: dict[int, dict[int, str]] = {}
    for f in errors:
        if f.field.startswith("captions["):
            drop_caption.setdefault(f.line, {})[int(f.field[len("captions[") : -1])] = f.code
    clean: list[ManifestRecord] = []
    removed: list[dict[str, Any]] = [
        {"line": f.line, "removed": "line", "code": f.code, "message": f.message}
        for f in errors
        if f.code == "MANIFEST_BAD_LINE"
    ]
    for line, record in records:
        if line in drop_record:
            removed.append(
                {
                    "line": line,
                    "removed": "record",
                    "code": drop_record[line],
                    "image": record.image,
                    "captions": record.captions,
                }
            )
            continue
        dropped = drop_caption.get(line, {})
        for index, code in sorted(dropped.items()):
            removed.append(
                {
                    "line": line,
                    "removed": f"captions[{index}]",
                    "code": code,
                    "image": record.image,
                    "caption": record.captions[index],
                }
            )
        captions = [c for i, c in enumerate(record.captions) if i not in dropped]
        update: dict[str, Any] = {"captions": captions}
        if with_quality:
            update["metadata"] = {**record.metadata, "quality_flags": quality.get(line, [])}
        clean.append(record.model_copy(update=update))
    return clean, removed


def run_data_check(cfg: DataCheckConfig) -> dict[str, Any]:
    """Check a manifest and its images; write OUT/check_report.json and OUT/manifest.clean.jsonl.

    Args:
        cfg: the check config; `manifest=None` checks the embedded sample.

    Returns:
        The report (summary, counts per code and severity, findings, removals, duplicate groups).

    Raises:
        ManifestError: the manifest is missing, or the clean manifest would overwrite it.
    """
    manifest = cfg.manifest or sample_manifest()
    if not manifest.is_file():
        raise ManifestError(f"{manifest}: manifest not found; create one with `altcap data import`")
    clean_path = cfg.out_dir / "manifest.clean.jsonl"
    if clean_path.resolve() == manifest.resolve():
        raise ManifestError(
            f"{manifest}: --out would overwrite the manifest being checked; choose another --out"
        )
    started = time.perf_counter()
    lines, findings = read_manifest_tolerant(manifest)
    records, repeat_findings, paths = _drop_repeated_images(lines, manifest)
    findings += repeat_findings
    for line, record in records:
        findings += check_record_captions(record, str(manifest), line, cfg.max_caption_chars)[0]
        findings += check_record_context(record, str(manifest), line, cfg.max_context_chars)
    findings += find_repeated_captions(records, str(manifest))
    groups: list[dict[str, Any]] = []
    images_checked = 0
    if cfg.check_images:
        image_found, groups, images_checked = _check_images(cfg, manifest, records, paths)
        findings += image_found
    findings.sort(key=lambda f: (f.line is None, f.line or 0, SEVERITY_ORDER[f.severity], f.code))
    clean, removed = _build_clean(lines, findings, cfg.check_images and cfg.quality_flags)
    write_manifest(clean_path, [relocate_record(r, manifest.parent, cfg.out_dir) for r in clean])
    seconds = time.perf_counter() - started
    report = _assemble_report(cfg, manifest, lines, findings, removed, groups, images_checked, seconds)
    write_json_atomic(cfg.out_dir / "check_report.json", report)
    return report


def _assemble_report(
    cfg: DataCheckConfig,
    manifest: Path,
    lines: Lines,
    findings: list[Finding],
    removed: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    images_checked: int,
    seconds: float,
) -> dict[str, Any]:
    per_code, per_severity = count_findings(findings)
    summary = {
        "manifest": str(manifest),
        "records": len(lines),
        "captions": sum(len(r.captions) for _, r in lines),
        "images_checked": images_checked,
        **{f"{severity}s": n for severity, n in per_severity.items()},
        "removed_records": sum(1 for r in removed if r["removed"] == "record"),
        "removed_captions": sum(1 for r in removed if r["removed"].startswith("captions[")),
        "removed_lines": sum(1 for r in removed if r["removed"] == "line"),
        "duplicate_groups": len(groups),
        "seconds": round(seconds, 3),
        "images_per_second": round(images_checked / seconds, 1) if seconds > 0 else None,
    }
    return {
        "summary": summary,
        "counts_per_code": per_code,
        "counts_per_severity": per_severity,
        "findings": [f.to_dict() for f in findings],
        "removed": removed,
        "duplicate_groups": groups,
        "clean_manifest": str(cfg.out_dir / "manifest.clean.jsonl"),
        "provenance": build_provenance(cfg, manifest=manifest),
    }
