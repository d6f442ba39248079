"""Where each `altcap run` stage writes: its own folder in the run, or the one the user gave.

A stage section may set its output folder (`train.output_dir`, `evaluate.out`, ...): that stage
then writes there, the stages after it read from there, and summary.md links to it. The paths
between stages (`train.data.manifest`, `evaluate.pred`, ...) are the pipeline's to fill in; a
user who sets one is told which top-level key to set instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from altcap.config import ConfigError

# Stage folder name -> (section, field) a user may set to move it; default folders live in run_dir.
OUTPUT_FIELDS = {
    "check": ("check", "out_dir"),
    "split": ("split", "out_dir"),
    "train": ("train", "output_dir"),
    "evaluate": ("evaluate", "out"),
    "study": ("simulation", "out"),
    "analysis": ("analysis", "out"),
}
DEFAULT_FOLDERS = {
    "check": "01_check",
    "split": "01_check/split",
    "train": "03_train",
    "evaluate": "05_evaluate",
    "study": "06_study",
    "analysis": "07_analysis",
    "memo": "08_memo",
}
# Inputs the pipeline wires from one stage to the next, and what to set instead.
WIRED_FIELDS = {
    "check.manifest": "the top-level `manifest`",
    "split.manifest": "the top-level `manifest`",
    "split.check_report": "nothing (the check stage's report is used)",
    "train.model": "the top-level `model`",
    "train.data.manifest": "the top-level `manifest`",
    "evaluate.refs": "the top-level `manifest`",
    "evaluate.pred": "nothing (both systems' captions are scored)",
    "evaluate.name": "nothing (the systems are base and finetuned)",
    "evaluate.split": "`caption.split`",
    "simulation.images": "nothing (the captioned images are used)",
    "simulation.with_metrics": "nothing",
    "analysis.export_dir": "`study.export_dir` with `study.mode: export`",
    "analysis.metrics": "nothing (the evaluate stage's metrics.json is used)",
}
OWNED_LIST = "owned_folders.json"


def _given(cfg: Any, dotted: str) -> bool:
    """True when the user set this field (in YAML or --set), whatever its value."""
    *parents, leaf = dotted.split(".")
    node = cfg
    for part in parents:
        if part not in node.model_fields_set:
            return False
        node = getattr(node, part)
    return leaf in node.model_fields_set


def stage_folders(cfg: Any) -> dict[str, Path]:
    """Each stage's output folder: the user's, where a section sets it, else one in run_dir."""
    folders = {name: cfg.run_dir / default for name, default in DEFAULT_FOLDERS.items()}
    for name, (section, field) in OUTPUT_FIELDS.items():
        if _given(cfg, f"{section}.{field}"):
            folders[name] = Path(getattr(getattr(cfg, section), field))
    return folders


def check_pipeline_paths(cfg: Any) -> None:
    """Refuse wired fields set by the user and output folders that two stages would share.

    Raises:
        ConfigError: listing every problem, each with what to set instead.
    """
    problems = [
        f"{dotted}: set by the pipeline between stages; set {instead} instead"
        for dotted, instead in WIRED_FIELDS.items()
        if _given(cfg, dotted)
    ]
    folders = stage_folders(cfg)
    for first, path in folders.items():
        for second, other in folders.items():
            # the split folder sits inside the check folder by design
            if first < second and _overlaps(path, other) and {first, second} != {"check", "split"}:
                problems.append(
                    f"{first} and {second} stages would both write into {other}; give each its own folder"
                )
    if problems:
        raise ConfigError(problems)


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def fresh_folder(folder: Path, run_dir: Path) -> Path:
    """Empty a stage's output folder before a rerun, but only one this run owns.

    A folder inside run_dir is the run's; one outside it is the run's once a stage has written
    there (listed in run_dir/.stages/owned_folders.json). Any other non-empty folder is the user's
    and is never deleted.

    Raises:
        ConfigError: the folder holds files this run did not write.
    """
    listing = run_dir / ".stages" / OWNED_LIST
    owned = set(json.loads(listing.read_text(encoding="utf-8"))) if listing.is_file() else set()
    inside = folder.resolve().is_relative_to(run_dir.resolve())
    if folder.exists() and not inside and str(folder.resolve()) not in owned and any(folder.iterdir()):
        raise ConfigError(
            [f"{folder}: not empty and not written by this run; choose an empty folder (nothing was changed)"]
        )
    if folder.exists():
        shutil.rmtree(folder)
    if not inside:
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text(json.dumps(sorted(owned | {str(folder.resolve())})), encoding="utf-8")
    return folder
