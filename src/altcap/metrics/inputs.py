"""Read the references and every system's captions, check them, and join them by image.

Nothing is dropped silently: problems that make a score wrong (missing or duplicate images, an
unreadable file) are errors naming the images; problems a score can absorb (empty captions, extra
images without references) are warnings that name the images and are recorded in metrics.json.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from altcap.data.manifest import ManifestError, ManifestRecord, read_manifest
from altcap.metrics.config import EvaluateConfig
from altcap.metrics.prediction_files import PredictionFileError, match_predictions, read_prediction_file

log = logging.getLogger(__name__)
SHOWN_NAMES = 10


class EvaluateInputError(ValueError):
    """Inputs `altcap evaluate` cannot score; one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("cannot evaluate:\n  - " + "\n  - ".join(problems))


@dataclass
class SystemInput:
    """One system's captions, aligned with `EvalInputs.images`."""

    name: str
    pred_path: Path
    captions: list[str]


@dataclass
class EvalInputs:
    """References and predictions joined by image, ready to score."""

    images: list[str]
    references: list[list[str]]
    metadata: list[dict[str, Any]]
    systems: list[SystemInput]
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, dict[str, Any]] = field(default_factory=dict)


def describe_names(names: list[str]) -> str:
    """First `SHOWN_NAMES` names and the total count, for error and warning messages."""
    shown = ", ".join(repr(n) for n in names[:SHOWN_NAMES])
    more = f", ... (+{len(names) - SHOWN_NAMES} more)" if len(names) > SHOWN_NAMES else ""
    return f"{shown}{more} [{len(names)} in all]"


def read_references(path: Path, split: str, problems: list[str], warnings: list[str]) -> list[ManifestRecord]:
    """Read the manifest split, reporting unreadable files, duplicates and images without references."""
    try:
        records = read_manifest(path, None if split == "all" else split)
    except ManifestError as err:
        problems.append(str(err))
        return []
    except UnicodeDecodeError as err:
        problems.append(f"{path}: not UTF-8 ({err}); re-save the manifest as UTF-8")
        return []
    if not records:
        problems.append(
            f"{path}: no records with split {split!r}; assign splits with `altcap data split` "
            "or pass --split all"
        )
    duplicates = [img for img, n in Counter(r.image for r in records).items() if n > 1]
    if duplicates:
        problems.append(
            f"{path}: duplicate images in the references: {describe_names(duplicates)}; "
            "keep one record per image"
        )
    empty_refs = [r.image for r in records if any(not c.strip() for c in r.captions)]
    no_refs = [r.image for r in records if not any(c.strip() for c in r.captions)]
    if no_refs:
        problems.append(
            f"{path}: images without any non-empty reference caption: {describe_names(no_refs)}; "
            "add references or drop these records"
        )
    elif empty_refs:
        warnings.append(f"{path}: empty reference captions ignored for {describe_names(empty_refs)}")
    return records


def read_system(
    path: Path, records: list[ManifestRecord], problems: list[str], warnings: list[str]
) -> dict[str, str]:
    """Read one system's predictions (any tool's JSONL, JSON or CSV) into manifest image -> caption,
    reporting unreadable files, duplicate and ambiguous keys, empties and bad characters;
    keys that name no reference image are kept under their own name (reported as extra images)."""
    try:
        matched = match_predictions(read_prediction_file(path), records)
    except PredictionFileError as err:
        problems.append(str(err))
        return {}
    if matched.duplicates:
        problems.append(
            f"{path}: duplicate images: {describe_names(matched.duplicates)}; keep one caption per image "
            "(a resumed `altcap caption` run never writes duplicates)"
        )
    if matched.ambiguous:
        examples = [f"{key!r} could be {' or '.join(found[:3])}" for key, found in matched.ambiguous.items()]
        problems.append(
            f"{path}: {len(matched.ambiguous)} image key(s) match several manifest images, e.g. "
            f"{'; '.join(examples[:3])}; use the manifest's image paths as keys"
        )
    captions = {**{key: "" for key in matched.unmatched}, **matched.captions}
    if not captions and not problems:
        problems.append(f"{path}: no captions in the file")
    _warn_about_captions(path, matched.captions, warnings)
    return captions


def _warn_about_captions(path: Path, captions: dict[str, str], warnings: list[str]) -> None:
    empty = [image for image, caption in captions.items() if not caption.strip()]
    if empty:
        warnings.append(
            f"{path}: empty captions scored as empty strings (they get 0) for {describe_names(empty)}"
        )
    garbled = [image for image, caption in captions.items() if "\ufffd" in caption]
    if garbled:
        warnings.append(
            f"{path}: captions contain U+FFFD (text was decoded with the wrong encoding "
            f"upstream) for {describe_names(garbled)}"
        )


def resolve_names(cfg: EvaluateConfig, problems: list[str]) -> list[str]:
    """System names: --name values in order, or the prediction file stems."""
    if cfg.name and len(cfg.name) != len(cfg.pred):
        problems.append(
            f"--name given {len(cfg.name)} times for {len(cfg.pred)} --pred files; "
            "give one name per --pred, in the same order, or none"
        )
        return [p.stem for p in cfg.pred]
    names = list(cfg.name) or [p.stem for p in cfg.pred]
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates:
        problems.append(f"system names are not unique: {duplicates}; pass --name for each --pred")
    return names


def describe_left_out(pred: Path, missing: list[str]) -> str:
    """Why images lack a caption, when `altcap caption` left them out as unreadable (its provenance)."""
    provenance = pred.with_name(pred.name + ".provenance.json")
    try:
        runs = json.loads(provenance.read_text(encoding="utf-8")).get("runs", [])
    except (OSError, ValueError):
        return ""
    unreadable = {entry.get("image") for run in runs for entry in run.get("unreadable_images", [])}
    left_out = [image for image in missing if image in unreadable]
    if not left_out:
        return ""
    return (
        f". {len(left_out)} of them were left out by `altcap caption` as unreadable "
        f"({describe_names(left_out)}; see {provenance.name}): fix those images and caption again"
    )


def join_images(
    ref_images: list[str], by_system: dict[str, dict[str, str]], cfg: EvaluateConfig, inputs: EvalInputs
) -> tuple[list[str], list[str]]:
    """Images every system captioned; the missing/extra ones are errors, or recorded with --allow-missing."""
    problems: list[str] = []
    ref_set = set(ref_images)
    keep = set(ref_images)
    for (name, captions), path in zip(by_system.items(), cfg.pred, strict=True):
        missing = [img for img in ref_images if img not in captions]
        extra = sorted(img for img in captions if img not in ref_set)
        if extra:
            inputs.warnings.append(
                f"{path}: images without references (keys matching no manifest image; not scored): "
                f"{describe_names(extra)}"
            )
        if missing and not cfg.allow_missing:
            hint = describe_left_out(path, missing)
            key_hint = (
                " (keys may be the manifest's image path, the file name or the record's source_id)"
                if extra
                else ""
            )
            problems.append(
                f"{path}: no caption for {describe_names(missing)} of the {len(ref_images)} "
                f"reference images{key_hint}; caption them, or pass --allow-missing to score "
                f"only the images every system captioned{hint}"
            )
        if missing or extra:
            inputs.dropped[name] = {"missing_images": missing, "extra_images": extra}
        keep -= set(missing)
    if cfg.allow_missing and len(keep) < len(ref_images):
        inputs.warnings.append(f"--allow-missing: scoring {len(keep)} of {len(ref_images)} reference images")
    if not keep and not problems:
        problems.append("no image is captioned by every system; nothing to score")
    return [img for img in ref_images if img in keep], problems


def load_inputs(cfg: EvaluateConfig) -> EvalInputs:
    """Read, check and join the references and all prediction files.

    Args:
        cfg: the resolved evaluate config (refs, pred, name, split, allow_missing).

    Returns:
        The joined inputs; `warnings` holds every non-fatal problem (also logged).

    Raises:
        EvaluateInputError: listing every problem that would make a score wrong.
    """
    problems: list[str] = []
    if cfg.refs is None:
        problems.append("--refs is required: the manifest JSONL with the reference captions")
    if not cfg.pred:
        problems.append("--pred is required: at least one captions JSONL file")
    if problems:
        raise EvaluateInputError(problems)
    inputs = EvalInputs(images=[], references=[], metadata=[], systems=[])
    records = read_references(cfg.refs, cfg.split, problems, inputs.warnings)
    names = resolve_names(cfg, problems)
    by_system = {
        name: read_system(path, records, problems, inputs.warnings)
        for name, path in zip(names, cfg.pred, strict=True)
    }
    if problems:
        raise EvaluateInputError(problems)
    images, problems = join_images([r.image for r in records], by_system, cfg, inputs)
    if problems:
        raise EvaluateInputError(problems)
    by_image = {r.image: r for r in records}
    inputs.images = images
    inputs.references = [[c for c in by_image[i].captions if c.strip()] for i in images]
    inputs.metadata = [by_image[i].metadata for i in images]
    inputs.systems = [
        SystemInput(n, p, [by_system[n][i] for i in images]) for n, p in zip(names, cfg.pred, strict=True)
    ]
    for message in inputs.warnings:
        log.warning(message)
    return inputs
