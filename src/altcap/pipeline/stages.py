"""Resumable stage runner behind `altcap run`.

A stage is skipped on a rerun when its fingerprint (its resolved config plus the content hashes of
its input files) matches the one recorded when it last finished and its outputs still exist.
Changing a config field or an input file therefore reruns that stage and everything downstream of
the files it rewrites, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from altcap.cli_output import notes_shown
from altcap.provenance import sha256_file


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: what it reads, what it writes, and how to run it."""

    name: str
    config: Any
    inputs: Sequence[Path]
    outputs: Sequence[Path]
    run: Callable[[], Any]


@dataclass(frozen=True)
class StageResult:
    name: str
    status: str  # "ran" or "skipped"
    seconds: float


def fingerprint_stage(stage: Stage) -> str:
    """Hash of the stage's config and the content of every input file (folders: every file inside)."""
    digest = hashlib.sha256()
    config = stage.config.model_dump(mode="json") if hasattr(stage.config, "model_dump") else stage.config
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for path in stage.inputs:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.name).encode())
            digest.update(sha256_file(file).encode() if file.exists() else b"<missing>")
    return digest.hexdigest()


def _marker(state_dir: Path, stage: Stage) -> Path:
    return state_dir / f"{stage.name}.json"


def is_stage_current(stage: Stage, state_dir: Path) -> bool:
    """True when the stage finished before with the same fingerprint and its outputs still exist."""
    marker = _marker(state_dir, stage)
    if not marker.is_file() or not all(p.exists() for p in stage.outputs):
        return False
    recorded = json.loads(marker.read_text(encoding="utf-8"))
    return recorded.get("fingerprint") == fingerprint_stage(stage)


def run_stages(stages: Sequence[Stage], state_dir: Path, console: Console | None = None) -> list[StageResult]:
    """Run stages in order, skipping those that are current.

    Fingerprints are computed just before each stage runs, so a stage whose inputs were rewritten by
    an earlier stage in the same run is rerun too.

    Returns:
        One result per stage, in order.
    """
    console = console or Console()
    headers = notes_shown()  # -q: errors only, so no stage headers
    state_dir.mkdir(parents=True, exist_ok=True)
    results: list[StageResult] = []
    for index, stage in enumerate(stages, start=1):
        label = f"[{index}/{len(stages)}] {stage.name}"
        if is_stage_current(stage, state_dir):
            if headers:
                console.print(f"{label}: up to date, skipped")
            results.append(StageResult(stage.name, "skipped", 0.0))
            continue
        if headers:
            console.rule(label)
        started = time.perf_counter()
        stage.run()
        seconds = time.perf_counter() - started
        marker = {"fingerprint": fingerprint_stage(stage), "seconds": round(seconds, 2)}
        _marker(state_dir, stage).write_text(json.dumps(marker), encoding="utf-8")
        results.append(StageResult(stage.name, "ran", seconds))
    return results
