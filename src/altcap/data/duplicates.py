"""Exact (same bytes) and near (perceptual hash) duplicate images, and duplicates across splits."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from altcap.data.findings import Finding, make_finding

# Rows of the pairwise hash comparison done at once: 1024 x N uint64 stays a few MB even for N=100k.
HASH_BLOCK_ROWS = 1024
# Evaluation splits are the ones whose integrity matters most, so on leakage the copy in the least
# protected split is the one dropped from the clean manifest.
SPLIT_PROTECTION = {"test": 0, "val": 1, "train": 2, None: 3}


@dataclass
class ImageEntry:
    """One checked record's image, as the duplicate search needs it."""

    line: int
    path: str
    split: str | None
    sha256: str
    phash: str | None


class UnionFind:
    """Disjoint sets over record indices; hand-written because it is ten lines and needs no dependency."""

    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _near_pairs(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose 64-bit hashes differ in at most `max_bits` bits."""
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(hashes), HASH_BLOCK_ROWS):
        block = hashes[start : start + HASH_BLOCK_ROWS, None]
        distance = np.bitwise_count(block ^ hashes[None, :])
        rows, cols = np.nonzero(distance <= max_bits)
        rows += start
        pairs.extend((int(i), int(j)) for i, j in zip(rows, cols, strict=True) if i < j)
    return pairs


def group_duplicates(entries: list[ImageEntry], near_bits: int) -> list[list[int]]:
    """Groups (of entry indices, in entry order) of exact or near-duplicate images; singletons omitted.

    Args:
        entries: decoded images of the manifest.
        near_bits: maximum perceptual-hash distance of near-duplicates; 0 = exact duplicates only.

    Returns:
        Groups with at least two members.
    """
    sets = UnionFind(len(entries))
    first_of_sha: dict[str, int] = {}
    for index, entry in enumerate(entries):
        sets.union(index, first_of_sha.setdefault(entry.sha256, index))
    hashed = [i for i, e in enumerate(entries) if e.phash is not None and first_of_sha[e.sha256] == i]
    if near_bits > 0 and hashed:
        hashes = np.array([int(entries[i].phash, 16) for i in hashed], dtype=np.uint64)
        for a, b in _near_pairs(hashes, near_bits):
            sets.union(hashed[a], hashed[b])
    members: dict[int, list[int]] = defaultdict(list)
    for index in range(len(entries)):
        members[sets.find(index)].append(index)
    return [group for group in members.values() if len(group) > 1]


def _hash_distance(a: str | None, b: str | None) -> int | None:
    return None if a is None or b is None else (int(a, 16) ^ int(b, 16)).bit_count()


def duplicate_findings(
    entries: list[ImageEntry], groups: list[list[int]], manifest_file: str
) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Findings for duplicate groups, and the groups as JSON for the report (and `data split`).

    Within one split every member after the first is a warning. Across splits (leakage) every member
    outside the most protected split (test, then val, then train) is an error.
    """
    findings: list[Finding] = []
    report_groups: list[dict[str, Any]] = []
    for group in groups:
        members = [entries[i] for i in group]
        kind = "exact" if len({m.sha256 for m in members}) == 1 else "near"
        report_groups.append(
            {
                "kind": kind,
                "lines": [m.line for m in members],
                "images": [m.path for m in members],
                "splits": [m.split for m in members],
            }
        )
        splits = {m.split for m in members if m.split is not None}
        keep_split = min(splits, key=SPLIT_PROTECTION.__getitem__) if splits else None
        anchor = next(m for m in members if m.split == keep_split)
        for member in members:
            if member is anchor:
                continue
            leak = len(splits) > 1 and member.split not in (None, keep_split)
            findings.append(_duplicate_finding(member, anchor, manifest_file, leak))
    return findings, report_groups


def _duplicate_finding(member: ImageEntry, anchor: ImageEntry, manifest_file: str, leak: bool) -> Finding:
    same = member.sha256 == anchor.sha256
    how = (
        "same bytes as"
        if same
        else f"looks like (hash distance {_hash_distance(member.phash, anchor.phash)})"
    )
    where = f"line {anchor.line} ({anchor.path}, split {anchor.split})"
    if leak:
        message = f"{member.path} in split {member.split} {how} {where}: leakage across splits"
        return make_finding("SPLIT_LEAKAGE", manifest_file, member.line, "image", message)
    code = "IMAGE_DUPLICATE" if same else "IMAGE_NEAR_DUPLICATE"
    return make_finding(code, manifest_file, member.line, "image", f"{member.path} {how} {where}")
