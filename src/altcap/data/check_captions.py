"""Caption rules of `data check`: empty, non-UTF-8, control characters, over-long, duplicated."""

from __future__ import annotations

import unicodedata
from collections import defaultdict

from altcap.data.findings import Finding, make_finding
from altcap.data.manifest import ManifestRecord

REPLACEMENT_CHAR = "\ufffd"
# Captions repeated on more images than this are listed with the first lines only, to keep reports small.
MAX_LINES_LISTED = 10


def _normalize(caption: str) -> str:
    return " ".join(caption.casefold().split())


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _is_not_utf8(caption: str) -> bool:
    """U+FFFD (bytes replaced while decoding) or a lone surrogate (undecodable bytes kept by Python)."""
    return REPLACEMENT_CHAR in caption or any("\ud800" <= ch <= "\udfff" for ch in caption)


def check_caption(caption: str, max_chars: int, where: tuple[str, int, str]) -> Finding | None:
    """The most serious problem of one caption, or None.

    Args:
        caption: the caption text.
        max_chars: longer captions are reported as over-long.
        where: (manifest file, line, field) of the caption.

    Returns:
        A finding, or None when the caption is fine.
    """
    file, line, field = where
    if not caption.strip():
        return make_finding(
            "CAPTION_EMPTY", file, line, field, f"caption is empty or whitespace only: {caption!r}"
        )
    if _is_not_utf8(caption):
        return make_finding(
            "CAPTION_NOT_UTF8", file, line, field, f"caption has undecodable bytes: {caption!r}"
        )
    controls = sorted({ch for ch in caption if _is_control(ch)})
    if controls:
        shown = ", ".join(repr(ch) for ch in controls)
        return make_finding(
            "CAPTION_CONTROL_CHARS", file, line, field, f"control characters {shown} in {caption!r}"
        )
    if len(caption) > max_chars:
        return make_finding(
            "CAPTION_TOO_LONG",
            file,
            line,
            field,
            f"{len(caption)} characters (limit {max_chars}): {caption[:60]!r}...",
        )
    return None


def check_record_captions(
    record: ManifestRecord, file: str, line: int, max_chars: int
) -> tuple[list[Finding], set[int]]:
    """Findings for one record's captions, and the indices of captions the clean manifest drops.

    Args:
        record: the manifest record.
        file: the manifest path (for findings).
        line: the record's manifest line.
        max_chars: the over-long caption limit.

    Returns:
        (findings, indices of captions with an error).
    """
    findings: list[Finding] = []
    dropped: set[int] = set()
    seen: dict[str, int] = {}
    for index, caption in enumerate(record.captions):
        field = f"captions[{index}]"
        finding = check_caption(caption, max_chars, (file, line, field))
        if finding is not None:
            findings.append(finding)
            if finding.severity == "error":
                dropped.add(index)
                continue
        key = _normalize(caption)
        if key in seen:
            findings.append(
                make_finding(
                    "CAPTION_DUPLICATE", file, line, field, f"same as captions[{seen[key]}]: {caption!r}"
                )
            )
        seen.setdefault(key, index)
    if not record.captions:
        findings.append(
            make_finding("IMAGE_NO_CAPTIONS", file, line, "captions", f"{record.image} has no captions")
        )
    elif len(dropped) == len(record.captions):
        findings.append(
            make_finding(
                "IMAGE_NO_CAPTIONS",
                file,
                line,
                "captions",
                f"{record.image}: every caption has an error and is dropped",
            )
        )
    return findings, dropped


def find_repeated_captions(records: list[tuple[int, ManifestRecord]], file: str) -> list[Finding]:
    """One info finding per caption text that appears on more than one image."""
    lines_of: dict[str, list[int]] = defaultdict(list)
    text_of: dict[str, str] = {}
    for line, record in records:
        for caption in {_normalize(c): c for c in record.captions if c.strip()}.items():
            lines_of[caption[0]].append(line)
            text_of.setdefault(caption[0], caption[1])
    findings = []
    for key, lines in lines_of.items():
        if len(lines) > 1:
            listed = ", ".join(map(str, lines[:MAX_LINES_LISTED])) + (
                ", ..." if len(lines) > MAX_LINES_LISTED else ""
            )
            findings.append(
                make_finding(
                    "CAPTION_REPEATED",
                    file,
                    lines[0],
                    "captions",
                    f"{text_of[key]!r} is a caption of {len(lines)} images (lines {listed})",
                )
            )
    return findings
