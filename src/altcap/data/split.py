"""`run_data_split`: deterministic, image-grouped train/val/test splits.

Records of one image, and (given a check report) near-duplicate images, form one group, and a group
goes to one split, so no image (or copy of it) is both trained and tested on. Existing splits are
kept unless `resplit`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from altcap.data.configs import DataSplitConfig
from altcap.data.duplicates import SPLIT_PROTECTION, UnionFind
from altcap.data.import_common import relocate_record, write_json_atomic
from altcap.data.manifest import ManifestError, ManifestRecord, read_manifest, resolve_image, write_manifest
from altcap.provenance import build_provenance


def _load_duplicate_groups(path: Path | None) -> list[list[str]]:
    if path is None:
        return []
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        return [list(group["images"]) for group in report["duplicate_groups"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ManifestError(
            f"{path}: not a check_report.json with duplicate_groups ({err}); run `altcap data check` first"
        ) from err


def group_records(
    records: list[ManifestRecord], image_paths: list[str], duplicates: list[list[str]]
) -> list[list[int]]:
    """Record indices grouped by shared image path and by duplicate group, in first-record order.

    Args:
        records: manifest records.
        image_paths: absolute image path of each record.
        duplicates: groups of absolute image paths that must stay together.

    Returns:
        Groups of record indices.
    """
    sets = UnionFind(len(records))
    first_of: dict[str, int] = {}
    for index, path in enumerate(image_paths):
        sets.union(index, first_of.setdefault(path, index))
    for group in duplicates:
        known = [first_of[os.path.abspath(p)] for p in group if os.path.abspath(p) in first_of]
        for other in known[1:]:
            sets.union(other, known[0])
    groups: dict[int, list[int]] = {}
    for index in range(len(records)):
        groups.setdefault(sets.find(index), []).append(index)
    return list(groups.values())


def _order_key(seed: int, record: ManifestRecord) -> str:
    # Hashing the manifest's own image string (not the absolute path) keeps the split stable when
    # the dataset folder moves.
    return hashlib.sha256(f"{seed}:{record.image}".encode()).hexdigest()


def assign_new_splits(
    groups: list[list[int]], records: list[ManifestRecord], cfg: DataSplitConfig
) -> dict[int, str]:
    """Split for every record of `groups`: shuffled by seed, then filled test, val, train by image count."""
    ordered = sorted(groups, key=lambda g: min(_order_key(cfg.seed, records[i]) for i in g))
    total = sum(len(g) for g in groups)
    targets = {"test": round(cfg.test_fraction * total), "val": round(cfg.val_fraction * total)}
    filled = Counter[str]()
    assigned: dict[int, str] = {}
    for group in ordered:
        split = next((s for s in ("test", "val") if filled[s] < targets[s]), "train")
        filled[split] += len(group)
        assigned.update(dict.fromkeys(group, split))
    return assigned


def _plan_splits(
    records: list[ManifestRecord], paths: list[str], groups: list[list[int]], cfg: DataSplitConfig
) -> tuple[dict[int, str | None], Counter[str], list[dict[str, Any]]]:
    """Final split per record, counts of what was done, and groups whose kept splits disagree."""
    final: dict[int, str | None] = {}
    done = Counter[str]()
    straddling: list[dict[str, Any]] = []
    to_assign: list[list[int]] = []
    for group in groups:
        existing = [records[i].split for i in group if records[i].split is not None and not cfg.resplit]
        if not existing:
            to_assign.append(group)
            continue
        if len(set(existing)) > 1:
            straddling.append(
                {"images": [records[i].image for i in group], "splits": [records[i].split for i in group]}
            )
        for i in group:
            if records[i].split is None:
                done["joined_group_split"] += 1
                final[i] = min(existing, key=SPLIT_PROTECTION.__getitem__)
            else:
                done["kept"] += 1
                final[i] = records[i].split
    for index, split in assign_new_splits(to_assign, records, cfg).items():
        final[index] = split
        done["assigned"] += 1
    _unify_same_image(final, paths, done)
    return final, done, straddling


def _unify_same_image(final: dict[int, str | None], paths: list[str], done: Counter[str]) -> None:
    """An image listed twice with different kept splits goes to the most protected of them."""
    indices_of: dict[str, list[int]] = {}
    for index, path in enumerate(paths):
        indices_of.setdefault(path, []).append(index)
    for indices in indices_of.values():
        splits = {final[i] for i in indices}
        if len(splits) > 1:
            target = min(splits, key=SPLIT_PROTECTION.__getitem__)
            done["moved_same_image"] += sum(1 for i in indices if final[i] != target)
            final.update(dict.fromkeys(indices, target))


def run_data_split(cfg: DataSplitConfig) -> dict[str, Any]:
    """Fill in the split of every record; write OUT/manifest.jsonl and OUT/split_report.json.

    Args:
        cfg: the split config.

    Returns:
        The split report.

    Raises:
        ManifestError: the manifest or check report is missing/unreadable, or the output exists.
    """
    if cfg.manifest is None:
        raise ManifestError("manifest: not set; pass the MANIFEST to split")
    out_path = cfg.out_dir / "manifest.jsonl"
    if out_path.exists() and not cfg.overwrite:
        raise ManifestError(f"{out_path}: already exists; choose another --out or pass --overwrite")
    if out_path.resolve() == cfg.manifest.resolve():
        raise ManifestError(f"{out_path}: is the manifest being split; choose another --out")
    records = read_manifest(cfg.manifest)
    paths = [os.path.abspath(resolve_image(cfg.manifest, r)) for r in records]
    groups = group_records(records, paths, _load_duplicate_groups(cfg.check_report))
    final, done, straddling = _plan_splits(records, paths, groups, cfg)
    out_records = [
        relocate_record(r.model_copy(update={"split": final[i]}), cfg.manifest.parent, cfg.out_dir)
        for i, r in enumerate(records)
    ]
    write_manifest(out_path, out_records)
    report = _assemble_report(cfg, out_records, groups, done, straddling)
    write_json_atomic(cfg.out_dir / "split_report.json", report)
    return report


def _assemble_report(
    cfg: DataSplitConfig,
    records: list[ManifestRecord],
    groups: list[list[int]],
    done: Counter[str],
    straddling: list[dict[str, Any]],
) -> dict[str, Any]:
    per_split = {s: {"records": 0, "captions": 0} for s in ("train", "val", "test")}
    for record in records:
        per_split[str(record.split)]["records"] += 1
        per_split[str(record.split)]["captions"] += len(record.captions)
    return {
        "manifest": str(cfg.out_dir / "manifest.jsonl"),
        "source_manifest": str(cfg.manifest),
        "per_split": per_split,
        "records": len(records),
        "groups": len(groups),
        "groups_with_several_records": sum(1 for g in groups if len(g) > 1),
        "kept_existing": done["kept"],
        "joined_group_split": done["joined_group_split"],
        "newly_assigned": done["assigned"],
        "moved_same_image": done["moved_same_image"],
        "straddling_groups": straddling,
        "note": "straddling_groups keep their existing splits; pass --resplit to regroup them"
        if straddling
        else None,
        "provenance": build_provenance(cfg, manifest=cfg.manifest),
    }
