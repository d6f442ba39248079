"""The columns `altcap data import csv|jsonl` (and hf-imagefolder's metadata.jsonl) understand.

This table drives the parsing, `altcap data import --help` and the README's import section; a new
per-record field (as the `context` column was) is one more `Column(...)` line here. A column the table
does not know is kept in the record's metadata and reported, never dropped silently.

Kept free of heavy imports: `altcap --help` builds its text from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Target = Literal["image", "captions", "prompt", "split", "metadata"]


@dataclass(frozen=True)
class Column:
    """One accepted column: its name, the other names it may go by, where it lands, and what it holds."""

    name: str
    aliases: tuple[str, ...]
    target: Target
    help: str
    required: bool = False


IMAGE_HELP = "image path: relative to --images-dir (default: the file's folder), or absolute"
CAPTION_HELP = (
    "one caption per row (rows of one image are grouped), a JSON list of captions, or numbered "
    "columns caption_1, caption_2, ..."
)
# One line per column: name, other accepted names, where it lands, what it holds (shown in --help/README).
COLUMNS: tuple[Column, ...] = (
    Column("image", ("file_name", "filename", "image_path", "path", "img"), "image", IMAGE_HELP, True),
    Column("caption", ("captions", "text", "description", "alt_text"), "captions", CAPTION_HELP, True),
    Column("prompt", ("instruction",), "prompt", "instruction for this image (default: the model's)"),
    Column("split", ("set", "subset"), "split", "train, val or test (dev, validation too); empty = unset"),
    Column("source_id", ("id", "image_id"), "metadata", "your id for the image; a key for `altcap evaluate`"),
    Column("ocr_text", ("ocr",), "metadata", "text visible in the image (accessibility statistics use it)"),
    Column(
        "context",
        ("image_context", "page_context"),
        "metadata",
        "where the image appears, e.g. news article about a flood, shopping listing, social post "
        "(instruction-following models see it in the prompt; the study shows it; the analysis splits by it)",
    ),
)
BY_NAME = {alias: column for column in COLUMNS for alias in (column.name, *column.aliases)}
CAPTIONS = BY_NAME["caption"]
OTHER_COLUMNS = "any other column: kept in the record's metadata, and reported"
# caption_1, caption 2, Caption3 ...: several captions of one image on one row.
NUMBERED_CAPTION = re.compile(r"^(?:caption|captions|text)[ _-]?(\d+)$", re.IGNORECASE)


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def map_columns(header: list[str], caption_field: str | None = None) -> tuple[dict[str, Column], list[str]]:
    """Match a file's column names against the table.

    Args:
        header: the column names as the file spells them (CSV header, or a JSONL object's keys).
        caption_field: a user-chosen caption column (config `caption_field`), matched exactly; it
            replaces the table's caption names.

    Returns:
        (file name -> Column for every known column, unknown names in file order). Numbered caption
        columns all map to the caption column; when two file columns name one other table column,
        the one earlier in (name, *aliases) wins and the other counts as unknown.
    """
    mapped: dict[str, Column] = {}
    candidates: dict[str, list[tuple[int, str]]] = {}
    for name in header:
        column = BY_NAME.get(_normalise(name))
        if name == caption_field or (caption_field is None and NUMBERED_CAPTION.match(name.strip())):
            mapped[name] = CAPTIONS
        elif column is not None and not (column is CAPTIONS and caption_field is not None):
            candidates.setdefault(column.name, []).append((_rank(column, name), name))
    for found in candidates.values():
        _, name = min(found)
        mapped[name] = BY_NAME[_normalise(name)]
    return mapped, [name for name in header if name not in mapped]


def _rank(column: Column, name: str) -> int:
    return (column.name, *column.aliases).index(_normalise(name))


def describe_columns(markdown: bool = False) -> str:
    """The table as text: one line per column (`--help`), or a Markdown table (README)."""
    if markdown:
        rows = ["| column | also accepted | required | holds |", "|---|---|---|---|"]
        for c in COLUMNS:
            aliases = ", ".join(f"`{a}`" for a in c.aliases)
            rows.append(f"| `{c.name}` | {aliases} | {'yes' if c.required else 'no'} | {c.help} |")
        return "\n".join(rows)
    # Parentheses, not brackets: rich (typer's help) would read [...] as markup.
    lines = [f"{c.name} ({'required; ' * c.required}also {', '.join(c.aliases)}): {c.help}" for c in COLUMNS]
    return "\n".join([*lines, OTHER_COLUMNS])
