"""What `data check` can find: the catalogue of codes (severity + fix), findings, and the summary table."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
ON_LOAD = "nothing to do: converted to RGB on load (load_image_rgb)"
# Photos by blind users are often like this: kept, and flagged so results can be split by quality.
QUALITY_NOTE = "kept; listed in metadata.quality_flags of the clean manifest (thresholds: data/quality.py)"

# code -> (severity, suggested fix). Errors are removed from the clean manifest, warnings are kept.
CATALOGUE: dict[str, tuple[Severity, str]] = {
    "MANIFEST_BAD_LINE": (
        "error",
        "fix the JSON on this line, or re-create the manifest with `altcap data import`",
    ),
    "IMAGE_LISTED_TWICE": ("error", "merge the later lines' captions into the first line listing the image"),
    "IMAGE_MISSING": ("error", "fix the image path, restore the file, or drop the record"),
    "IMAGE_NO_PERMISSION": ("error", "make the file readable (chmod a+r), or drop the record"),
    "IMAGE_ZERO_BYTES": ("error", "re-copy or re-download the image; the file is empty"),
    "IMAGE_UNREADABLE": ("error", "re-export the image as JPEG or PNG, or drop the record"),
    "IMAGE_TRUNCATED": ("error", "re-copy or re-download the image; the file is cut off"),
    "IMAGE_DECOMPRESSION_BOMB": (
        "error",
        "downscale the image (e.g. to 2048 px on the long side), drop it, or raise max_decoded_pixels",
    ),
    "IMAGE_TOO_SMALL": ("warning", "check the image is not a thumbnail or icon; models upscale it"),
    "IMAGE_EXTREME_ASPECT": ("warning", "crop the image; models squash it to a square"),
    "IMAGE_CMYK": ("info", ON_LOAD),
    "IMAGE_16BIT": ("info", "nothing to do: scaled to 8 bit and converted to RGB on load (load_image_rgb)"),
    "IMAGE_PALETTE": ("info", ON_LOAD),
    "IMAGE_ALPHA": (
        "info",
        "nothing to do: composited on white and converted to RGB on load (load_image_rgb)",
    ),
    "IMAGE_GREYSCALE": ("info", ON_LOAD),
    "IMAGE_EXIF_ORIENTATION": ("info", "nothing to do: EXIF orientation is applied on load (load_image_rgb)"),
    "IMAGE_BLURRY": ("info", QUALITY_NOTE),
    "IMAGE_UNDEREXPOSED": ("info", QUALITY_NOTE),
    "IMAGE_OVEREXPOSED": ("info", QUALITY_NOTE),
    "IMAGE_LOW_CONTRAST": ("info", QUALITY_NOTE),
    "IMAGE_NO_CAPTIONS": (
        "warning",
        "add captions, or keep it only for captioning (it cannot train or score)",
    ),
    "IMAGE_UNLISTED": ("info", "add the image to the manifest with captions, or ignore it"),
    "IMAGE_DUPLICATE": ("warning", "keep one copy and merge the captions"),
    "IMAGE_NEAR_DUPLICATE": ("warning", "check the pair; if it is the same photo keep one copy"),
    "SPLIT_LEAKAGE": (
        "error",
        "put both copies in one split (`altcap data split --check-report`) or drop one",
    ),
    "CAPTION_EMPTY": ("error", "write the caption or delete it"),
    "CAPTION_NOT_UTF8": ("error", "re-save the source as UTF-8 and re-import"),
    "CAPTION_CONTROL_CHARS": ("error", "remove the control characters (tabs, newlines, NUL, escapes)"),
    "CAPTION_TOO_LONG": ("warning", "shorten it or raise max_caption_chars; long captions get truncated"),
    "CAPTION_DUPLICATE": ("warning", "delete the repeated caption; it double-counts in training and metrics"),
    "CAPTION_REPEATED": ("info", "check the caption describes each of these images"),
    "CONTEXT_NOT_TEXT": (
        "warning",
        "write the context as text (e.g. \"news article about a flood\"); until then it is ignored",
    ),
    "CONTEXT_TOO_LONG": (
        "warning",
        "shorten it to a phrase or raise max_context_chars; the whole context goes into every prompt",
    ),
}


@dataclass
class Finding:
    """One problem or note, located by manifest line and field."""

    severity: Severity
    code: str
    file: str
    line: int | None
    field: str
    message: str
    fix: str
    lines: list[int] | None = None  # every line involved, where one finding covers several

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def make_finding(code: str, file: str, line: int | None, field: str, message: str) -> Finding:
    """A finding whose severity and suggested fix come from the catalogue.

    Args:
        code: a key of `CATALOGUE`.
        file: the file the problem is in (manifest or image).
        line: the manifest line (1-based), or None for folder-level findings.
        field: the record field, e.g. `image` or `captions[2]`.
        message: what exactly is wrong, with the offending value.

    Returns:
        The finding.
    """
    severity, fix = CATALOGUE[code]
    return Finding(severity=severity, code=code, file=file, line=line, field=field, message=message, fix=fix)


def count_findings(findings: list[Finding]) -> tuple[dict[str, int], dict[str, int]]:
    """Counts per code (catalogue order) and per severity."""
    per_code = Counter(f.code for f in findings)
    per_severity = Counter(f.severity for f in findings)
    codes = {code: per_code[code] for code in CATALOGUE if per_code[code]}
    return codes, {s: per_severity.get(s, 0) for s in SEVERITY_ORDER}


def render_summary(findings: list[Finding], summary: dict[str, Any], console: Console) -> None:
    """Print the human summary: one row per finding code with an example location and the fix."""
    table = Table(
        title=f"altcap data check: {summary['records']} records, {summary['images_checked']} images"
    )
    for column in ("severity", "code", "count", "first at", "suggested fix"):
        table.add_column(column, overflow="fold")
    first: dict[str, Finding] = {}
    for finding in findings:
        first.setdefault(finding.code, finding)
    counts, _ = count_findings(findings)
    style = {"error": "bold red", "warning": "yellow", "info": "cyan"}
    for code in sorted(counts, key=lambda c: (SEVERITY_ORDER[CATALOGUE[c][0]], c)):
        example = first[code]
        where = f"line {example.line}" if example.line is not None else example.file
        severity = CATALOGUE[code][0]
        table.add_row(f"[{style[severity]}]{severity}[/]", code, str(counts[code]), where, example.fix)
    if not counts:
        table.add_row("[green]ok[/]", "-", "0", "-", "no problems found")
    console.print(table)
