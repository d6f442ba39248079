"""Importers for a user's own data: CSV, JSONL, and a Hugging Face `imagefolder` with metadata.jsonl."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from altcap.data.configs import DataImportConfig
from altcap.data.import_columns import COLUMNS, Column, describe_columns, map_columns
from altcap.data.import_common import (
    DataImportError,
    ImportResult,
    group_rows,
    list_image_files,
    normalize_split,
    place_image,
    read_text_lines,
)

HF_SPLIT_DIRS = {"train": "train", "validation": "val", "val": "val", "dev": "val", "test": "test"}


class ColumnReader:
    """Turns parsed rows (CSV dicts or JSONL objects) into caption rows through the column table,
    remembering which unknown columns it met (reported once per file, kept as metadata)."""

    def __init__(self, cfg: DataImportConfig, source: Path, result: ImportResult):
        self.cfg, self.source, self.result = cfg, source, result
        self.unknown: dict[str, int] = {}  # column -> first line seen
        self._mappings: dict[tuple[str, ...], dict[str, Column]] = {}

    def mapping(self, keys: list[str], line: int) -> dict[str, Column]:
        """The column mapping of a header (cached per distinct key set)."""
        if tuple(keys) not in self._mappings:
            mapped, unknown = map_columns(keys, self.cfg.caption_field)
            for name in unknown:
                self.unknown.setdefault(name, line)
            self._mappings[tuple(keys)] = mapped
        return self._mappings[tuple(keys)]

    def row(self, item: dict[str, Any], base: Path, where: str, line: int) -> dict[str, Any]:
        """One caption row (see `group_rows`) whose `caption` is a list (empty = uncaptioned)."""
        mapping = self.mapping(list(item), line)
        by_target: dict[str, list[str]] = {}
        for name, column in mapping.items():
            by_target.setdefault(column.target, []).append(name)
        missing = [role for role in ("image", "captions") if role not in by_target]
        if missing:
            role = "image" if "image" in missing else f"caption ({self.cfg.caption_field or 'caption'!r})"
            raise DataImportError(
                f"{where}: no {role} column; columns are {list(item)}. Accepted (see "
                "`altcap data import --help`):\n" + describe_columns()
            )
        image = item[by_target["image"][0]]
        if not isinstance(image, str) or not image.strip():
            raise DataImportError(f"{where}: image={image!r} is empty; give each row an image path")
        metadata = {k: v for k, v in item.items() if k not in mapping}
        for name in by_target.get("metadata", []):
            if item[name] not in (None, ""):
                metadata[mapping[name].name] = item[name]
        prompt = item.get(by_target["prompt"][0]) if "prompt" in by_target else None
        split = item.get(by_target["split"][0]) if "split" in by_target else None
        return {
            "image": place_image(base / image.strip(), self.cfg.out_dir),
            "caption": self._captions(item, by_target.get("captions", []), line),
            "prompt": prompt or None,
            "split": normalize_split(split, where) or self.cfg.split,
            "line": line,
            "metadata": metadata,
        }

    def _captions(self, item: dict[str, Any], names: list[str], line: int) -> list[str]:
        captions: list[str] = []
        for name in names:
            value = item[name]
            if isinstance(value, str) and value.strip().startswith("["):
                value = _parse_json_list(value)
            if isinstance(value, list):
                captions.extend(str(v) for v in value if v is not None)
            elif value is not None and (len(names) == 1 or str(value).strip()):
                # One caption column keeps an empty cell (`data check` reports it); numbered
                # columns are left empty where an image has fewer captions.
                captions.append(str(value))
        joined = [" ".join(c.splitlines()) for c in captions]
        if joined != captions:
            message = "line breaks inside a caption became spaces"
            self.result.note("CAPTION_NEWLINES_JOINED", self.source, message, line)
        return joined

    def report_unknown(self) -> None:
        """Note every unknown column once, and warn about them together."""
        for name, line in self.unknown.items():
            message = f"column {name!r} is not an import column; kept in metadata"
            self.result.note("UNKNOWN_COLUMN", self.source, message, line)
        if self.unknown:
            self.result.warnings.append(
                f"{self.source}: column(s) {', '.join(map(repr, self.unknown))} are not import columns; kept "
                f"in each record's metadata. Accepted columns: {', '.join(c.name for c in COLUMNS)} "
                "(and aliases, see `altcap data import --help`)"
            )


def _parse_json_list(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text  # a caption that happens to start with "[": keep it as written
    return value if isinstance(value, list) else text


def _expand_captions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per caption, so grouping is uniform; a row without captions keeps its image uncaptioned."""
    expanded = []
    for row in rows:
        expanded.extend({**row, "caption": caption} for caption in row["caption"])
        if not row["caption"]:
            expanded.append({**row, "caption": None})
    return expanded


def read_spreadsheet_text(path: Path, result: ImportResult) -> str:
    """A CSV's text as spreadsheets save it: UTF-8 (BOM or not), else Windows-1252 (Excel's "CSV")."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return "".join(read_text_lines(path, result))  # neither: bad bytes become U+FFFD, noted per line
    result.note("READ_AS_CP1252", path, "not UTF-8: read as Windows-1252 (cp1252), as Excel saves CSV")
    result.warnings.append(f"{path}: not UTF-8, read as Windows-1252 (cp1252); else re-save it as UTF-8")
    return text


def import_csv(cfg: DataImportConfig) -> ImportResult:
    """CSV with a header (columns: `import_columns.COLUMNS`); `,`, `;` or tab separated; rows of one
    image are grouped."""
    path = cfg.source or Path()
    if not path.is_file():
        raise DataImportError(f"{path}: CSV not found")
    result = ImportResult()
    text = read_spreadsheet_text(path, result)
    first_line = text.split("\n", 1)[0]
    try:
        # Only the separator is taken from the header: its quoting rules would be guesses.
        delimiter = csv.Sniffer().sniff(first_line, delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","  # one column, or nothing to go on
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = ColumnReader(cfg, path, result)
    columns.mapping(list(reader.fieldnames or []), 1)  # unknown columns are reported at the header
    rows = []
    for item in reader:
        if None in item:
            result.note(
                "EXTRA_CELLS", path, f"row has more cells than the header: {item[None]!r}", reader.line_num
            )
            item.pop(None)
        line = reader.line_num
        rows.append(columns.row(item, cfg.images_dir or path.parent, f"{path}:{line}", line))
    if reader.fieldnames is None:
        raise DataImportError(f"{path}: empty CSV; the first line must be a header such as image,caption")
    columns.report_unknown()
    result.records = group_rows(_expand_captions(rows), path, result)
    return result


def _read_jsonl_items(path: Path, result: ImportResult) -> list[tuple[int, dict[str, Any]]]:
    items = []
    for line_no, line in enumerate(read_text_lines(path, result), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataImportError(
                f"{path}:{line_no}: not valid JSON ({err.msg}); one object per line"
            ) from err
        if not isinstance(item, dict):
            raise DataImportError(f"{path}:{line_no}: expected a JSON object, got {type(item).__name__}")
        items.append((line_no, item))
    return items


def import_jsonl(cfg: DataImportConfig) -> ImportResult:
    """JSONL, one object per caption (or per image with a `captions` list); grouped by image."""
    path = cfg.source or Path()
    if not path.is_file():
        raise DataImportError(f"{path}: JSONL not found")
    result = ImportResult()
    base = cfg.images_dir or path.parent
    columns = ColumnReader(cfg, path, result)
    rows = [columns.row(item, base, f"{path}:{n}", n) for n, item in _read_jsonl_items(path, result)]
    columns.report_unknown()
    result.records = group_rows(_expand_captions(rows), path, result)
    return result


def import_hf_imagefolder(cfg: DataImportConfig) -> ImportResult:
    """HF `imagefolder`: metadata.jsonl (file_name + caption/text) at the root or in train/validation/test."""
    # Read metadata.jsonl directly rather than through `datasets.load_dataset("imagefolder")`: that
    # decodes every image into an Arrow cache, while a manifest only needs names and text.
    root = cfg.source or Path()
    folders = [(root, None)] + [(root / d, s) for d, s in HF_SPLIT_DIRS.items() if (root / d).is_dir()]
    folders = [(f, s) for f, s in folders if (f / "metadata.jsonl").is_file()]
    if not folders:
        raise DataImportError(
            f"{root}: no metadata.jsonl here or in train/, validation/, test/; "
            "create one with a file_name and a caption field per line"
        )
    result = ImportResult()
    rows = []
    for folder, split in folders:
        meta = folder / "metadata.jsonl"
        columns = ColumnReader(cfg, meta, result)
        for line_no, item in _read_jsonl_items(meta, result):
            row = columns.row(item, folder, f"{meta}:{line_no}", line_no)
            row["split"] = row["split"] or split
            rows.append(row)
        listed = {r["image"] for r in rows}
        for image in list_image_files(folder):
            if place_image(image, cfg.out_dir) not in listed:
                result.note(
                    "IMAGE_WITHOUT_CAPTIONS",
                    folder,
                    f"{image.name} is not in metadata.jsonl; kept uncaptioned",
                )
                rows.append(
                    {
                        "image": place_image(image, cfg.out_dir),
                        "caption": [],
                        "split": split,
                        "line": None,
                        "metadata": {},
                    }
                )
        columns.report_unknown()
    result.records = group_rows(_expand_captions(rows), root, result)
    return result
