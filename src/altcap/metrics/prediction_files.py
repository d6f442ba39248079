"""Predictions made by any tool: read JSONL, JSON (COCO results too) or CSV, and match each row's
image key to a manifest record.

Only an image key and a caption are required; `model_id` and every other column are optional.
The key may be the manifest's image path, the image's file name (or a path ending in it, as
`altcap caption --images` writes), or the record's source id (COCO's numeric `image_id`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from altcap.data.manifest import ManifestRecord

# Accepted column names, first match wins; COCO results use image_id + caption.
IMAGE_KEYS = ("image", "image_id", "file_name", "filename", "image_path", "path", "img", "image_name", "id")
CAPTION_KEYS = ("caption", "text", "prediction", "generated_text", "description", "alt_text", "output")
# Wrappers some tools put around the list of rows in a JSON file.
JSON_LIST_KEYS = ("annotations", "results", "predictions", "captions", "data")
SOURCE_ID_KEYS = ("source_id", "image_id", "coco_id", "id")


class PredictionFileError(ValueError):
    """A predictions file that cannot be read; names the file, line or key and the fix."""


@dataclass(frozen=True)
class Prediction:
    """One caption and the image key it was given under."""

    key: str
    caption: str
    line: int


@dataclass
class MatchResult:
    """Predictions joined to manifest images, with what could not be joined."""

    captions: dict[str, str] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PredictionFileError(f"{path}: not UTF-8 ({err}); re-save it as UTF-8") from err


def _pick(keys: list[str], options: tuple[str, ...], path: Path, role: str) -> str:
    lowered = {key.strip().lower(): key for key in keys}
    for option in options:
        if option in lowered:
            return lowered[option]
    raise PredictionFileError(
        f"{path}: no {role} column; expected one of {list(options)}, found {keys}; rename that column"
    )


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _decode(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        try:  # only the separator, from the header: quoting rules guessed from a sample can be wrong
            delimiter = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        return [(reader.line_num, row) for row in reader]
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PredictionFileError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
        if isinstance(data, dict):
            wrapped = next((data[k] for k in JSON_LIST_KEYS if isinstance(data.get(k), list)), None)
            # {"img.jpg": "a caption", ...}: a plain image -> caption mapping.
            data = wrapped if wrapped is not None else [{"image": k, "caption": v} for k, v in data.items()]
        if not isinstance(data, list):
            raise PredictionFileError(f"{path}: expected a JSON list of objects, each an image key + caption")
        return list(enumerate(data, start=1))
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((line_no, json.loads(line)))
            except json.JSONDecodeError as err:
                message = f"{path}:{line_no}: not valid JSON ({err.msg}); one object per line"
                raise PredictionFileError(message) from err
    return rows


def read_prediction_file(path: Path) -> list[Prediction]:
    """Read one system's predictions (JSONL, JSON or CSV by suffix; anything else as JSONL).

    Args:
        path: the predictions file.

    Returns:
        Predictions in file order.

    Raises:
        PredictionFileError: missing file, bad syntax, a row that is not an object, or no image /
            caption column (the message lists the accepted names).
    """
    if not path.is_file():
        raise PredictionFileError(f"{path}: predictions file not found; write one with `altcap caption`")
    predictions = []
    for line, row in _read_rows(path):
        if not isinstance(row, dict):
            raise PredictionFileError(f"{path}:{line}: expected an object, got {type(row).__name__}")
        keys = list(row)
        key = row[_pick(keys, IMAGE_KEYS, path, "image")]
        caption = row[_pick(keys, CAPTION_KEYS, path, "caption")]
        if key is None or not str(key).strip():
            raise PredictionFileError(f"{path}:{line}: empty image key; give every row its image")
        predictions.append(Prediction(str(key).strip(), "" if caption is None else str(caption), line))
    return predictions


def _normalise(key: str) -> str:
    return key.replace("\\", "/").removeprefix("./")


def build_key_index(records: list[ManifestRecord]) -> dict[str, dict[str, set[str]]]:
    """Per kind of key (path, name, source_id): key -> the manifest images it names."""
    index: dict[str, dict[str, set[str]]] = {"path": {}, "name": {}, "source_id": {}}
    for record in records:
        index["path"].setdefault(_normalise(record.image), set()).add(record.image)
        index["name"].setdefault(PurePosixPath(_normalise(record.image)).name, set()).add(record.image)
        for id_key in SOURCE_ID_KEYS:
            if record.metadata.get(id_key) is not None:
                index["source_id"].setdefault(str(record.metadata[id_key]), set()).add(record.image)
                break
    return index


def resolve_key(key: str, index: dict[str, dict[str, set[str]]]) -> set[str]:
    """The manifest images a key names: by path, then by file name, then by source id (empty = none)."""
    key = _normalise(key)
    if key in index["path"]:
        return index["path"][key]
    by_name = index["name"].get(PurePosixPath(key).name, set())
    # A path key (absolute, or relative to another folder) must end with the manifest path.
    if "/" in key:
        by_name = {img for img in by_name if key.endswith(_normalise(img)) or _normalise(img).endswith(key)}
    return by_name or index["source_id"].get(key, set())


def match_predictions(predictions: list[Prediction], records: list[ManifestRecord]) -> MatchResult:
    """Join predictions to manifest images.

    Args:
        predictions: from `read_prediction_file`.
        records: the reference manifest's records.

    Returns:
        Captions by manifest image, plus duplicate images, ambiguous keys (with the images they
        could mean) and unmatched keys, for the caller to report.
    """
    index = build_key_index(records)
    result = MatchResult()
    for prediction in predictions:
        images = resolve_key(prediction.key, index)
        if len(images) > 1:
            result.ambiguous[prediction.key] = sorted(images)
        elif not images:
            result.unmatched.append(prediction.key)
        else:
            [image] = images
            if image in result.captions:
                result.duplicates.append(image)
            result.captions[image] = prediction.caption
    return result
