"""Importers for published datasets: Flickr8k, COCO captions, Karpathy splits, VizWiz-Captions."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from altcap.data.configs import DataImportConfig
from altcap.data.import_common import (
    DataImportError,
    ImportResult,
    list_image_files,
    place_image,
    read_json_file,
    read_text_lines,
    require_keys,
)
from altcap.data.manifest import ManifestRecord

FLICKR8K_TOKENS = "Flickr8k.token.txt"
FLICKR8K_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
# The official zip unpacks images into Flicker8k_Dataset (sic); resized copies often use Images.
FLICKR8K_IMAGE_DIRS = ("Images", "Flicker8k_Dataset", "Flickr8k_Dataset")


def _flickr8k_images_dir(cfg: DataImportConfig, source: Path) -> Path:
    if cfg.images_dir is not None:
        return cfg.images_dir
    for name in FLICKR8K_IMAGE_DIRS:
        if (source / name).is_dir():
            return source / name
    return source


def _read_flickr8k_tokens(path: Path, result: ImportResult) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = defaultdict(list)
    for line_no, line in enumerate(read_text_lines(path, result), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.rstrip("\r\n").partition("\t")
        name, hash_sign, _index = key.partition("#")
        if not tab or not hash_sign:
            result.note(
                "MALFORMED_LINE",
                path,
                f"expected 'IMAGE#N<TAB>caption', got {line.strip()[:80]!r}",
                line_no,
                text=line.rstrip("\r\n"),
            )
            continue
        captions[name].append(caption)
    return captions


def _read_flickr8k_splits(source: Path, result: ImportResult) -> dict[str, str]:
    split_of: dict[str, str] = {}
    for split, file_name in FLICKR8K_SPLIT_FILES.items():
        path = source / file_name
        if not path.is_file():
            result.note("SPLIT_FILE_MISSING", path, f"no {file_name}: its images get split None")
            continue
        for line_no, line in enumerate(read_text_lines(path, result), start=1):
            name = line.strip()
            if name and split_of.setdefault(name, split) != split:
                result.note(
                    "IMAGE_IN_TWO_SPLITS",
                    path,
                    f"{name} is already listed in {split_of[name]}; kept {split_of[name]}",
                    line_no,
                )
    return split_of


def import_flickr8k(cfg: DataImportConfig) -> ImportResult:
    """Flickr8k folder: Flickr8k.token.txt + Flickr_8k.{train,dev,test}Images.txt (dev -> val)."""
    source = cfg.source or Path()
    tokens = source / FLICKR8K_TOKENS
    if not tokens.is_file():
        raise DataImportError(
            f"{tokens}: not found; SRC must be the Flickr8k folder holding {FLICKR8K_TOKENS}"
        )
    result = ImportResult()
    images_dir = _flickr8k_images_dir(cfg, source)
    captions = _read_flickr8k_tokens(tokens, result)
    split_of = _read_flickr8k_splits(source, result)
    on_disk = {p.name for p in list_image_files(images_dir)}
    for name in sorted(set(captions) | on_disk):
        split = split_of.get(name)
        if split is None:
            result.note("IMAGE_IN_NO_SPLIT", tokens, f"{name} is in no split file; kept with split None")
        if name not in on_disk:
            result.note(
                "CAPTIONS_WITHOUT_IMAGE", images_dir, f"{name} has captions but no file in {images_dir}"
            )
        if name not in captions:
            result.note("IMAGE_WITHOUT_CAPTIONS", images_dir, f"{name} has no line in {FLICKR8K_TOKENS}")
        result.records.append(
            ManifestRecord(
                image=place_image(images_dir / name, cfg.out_dir),
                captions=captions.get(name, []),
                split=split,
                metadata={"source": "flickr8k", "source_id": name},
            )
        )
    for name in sorted(set(split_of) - set(captions) - on_disk):
        result.note(
            "SPLIT_LISTS_UNKNOWN_IMAGE", source, f"{name} is in {split_of[name]} list but nowhere else"
        )
    return result


def _records_from_coco_like(
    images: list[dict[str, Any]],
    captions_of: dict[Any, list[str]],
    images_dir: Path,
    cfg: DataImportConfig,
    source: str,
    result: ImportResult,
) -> None:
    for image in images:
        captions = captions_of.get(image["id"], [])
        if not captions:
            result.note(
                "IMAGE_WITHOUT_CAPTIONS",
                images_dir,
                f"{image['file_name']} (id {image['id']}) has no caption",
            )
        extra = {k: image[k] for k in ("width", "height", "text_detected") if k in image}
        result.records.append(
            ManifestRecord(
                image=place_image(images_dir / image["file_name"], cfg.out_dir),
                captions=captions,
                split=cfg.split,
                metadata={"source": source, "source_id": image["id"], **extra},
            )
        )


def import_coco(cfg: DataImportConfig) -> ImportResult:
    """COCO captions JSON (`images` with id/file_name, `annotations` with image_id/caption)."""
    path = cfg.source or Path()
    data = read_json_file(path)
    require_keys(data, ("images", "annotations"), path, "COCO captions")
    result = ImportResult()
    known = {image["id"] for image in data["images"]}
    captions_of: dict[Any, list[str]] = defaultdict(list)
    for index, ann in enumerate(data["annotations"]):
        if ann.get("image_id") not in known:
            result.note(
                "CAPTIONS_WITHOUT_IMAGE",
                path,
                f"annotations[{index}] image_id={ann.get('image_id')!r} is not in images",
                caption=ann.get("caption"),
            )
            continue
        captions_of[ann["image_id"]].append(ann.get("caption") or "")
    _records_from_coco_like(data["images"], captions_of, cfg.images_dir or path.parent, cfg, "coco", result)
    return result


def import_karpathy(cfg: DataImportConfig) -> ImportResult:
    """Karpathy split JSON (dataset_coco.json / dataset_flickr8k.json); restval -> train."""
    path = cfg.source or Path()
    data = read_json_file(path)
    require_keys(data, ("images",), path, "Karpathy split (dataset_*.json)")
    result = ImportResult()
    images_dir = cfg.images_dir or path.parent
    for index, image in enumerate(data["images"]):
        if "filename" not in image:
            raise DataImportError(
                f"{path}: images[{index}] has no 'filename'; is this a Karpathy split file?"
            )
        split = {"restval": "train"}.get(image.get("split", ""), image.get("split"))
        if split not in ("train", "val", "test"):
            result.note("UNKNOWN_SPLIT", path, f"images[{index}] split={image.get('split')!r}; kept as None")
            split = None
        captions = [s.get("raw", " ".join(s.get("tokens", []))) for s in image.get("sentences", [])]
        if not captions:
            result.note(
                "IMAGE_WITHOUT_CAPTIONS", path, f"images[{index}] {image['filename']} has no sentences"
            )
        metadata = {
            "source": data.get("dataset", "karpathy"),
            "source_id": image.get("cocoid", image.get("imgid")),
            "original_split": image.get("split"),
        }
        result.records.append(
            ManifestRecord(
                image=place_image(images_dir / image.get("filepath", "") / image["filename"], cfg.out_dir),
                captions=captions,
                split=split,
                metadata=metadata,
            )
        )
    return result


def _vizwiz_keep(ann: dict[str, Any], cfg: DataImportConfig) -> str | None:
    """Reason a VizWiz caption is excluded, or None to keep it."""
    if ann.get("is_rejected") and not cfg.include_rejected:
        return "rejected"
    if ann.get("is_precanned") and not cfg.include_precanned:
        return "precanned"
    return None


def import_vizwiz(cfg: DataImportConfig) -> ImportResult:
    """VizWiz-Captions JSON; rejected / precanned captions are excluded but kept in metadata and counted."""
    path = cfg.source or Path()
    data = read_json_file(path)
    require_keys(data, ("images",), path, "VizWiz-Captions")
    result = ImportResult()
    known = {image["id"] for image in data["images"]}
    captions_of: dict[Any, list[str]] = defaultdict(list)
    excluded_of: dict[Any, list[dict[str, str]]] = defaultdict(list)
    for index, ann in enumerate(data.get("annotations", [])):
        if ann.get("image_id") not in known:
            result.note(
                "CAPTIONS_WITHOUT_IMAGE",
                path,
                f"annotations[{index}] image_id={ann.get('image_id')!r} is not in images",
                caption=ann.get("caption"),
            )
            continue
        reason = _vizwiz_keep(ann, cfg)
        result.counts[f"captions_{'kept' if reason is None else reason}"] += 1
        if reason is None:
            captions_of[ann["image_id"]].append(ann.get("caption") or "")
        else:
            excluded_of[ann["image_id"]].append({"caption": ann.get("caption") or "", "reason": reason})
    _records_from_coco_like(data["images"], captions_of, cfg.images_dir or path.parent, cfg, "vizwiz", result)
    for record, image in zip(result.records, data["images"], strict=True):
        if excluded_of.get(image["id"]):
            record.metadata["excluded_captions"] = excluded_of[image["id"]]
    return result
