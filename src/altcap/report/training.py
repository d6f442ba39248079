"""What was trained, for the memo: read from the files `altcap train` wrote into its run folder.

provenance.json (model, data manifest and hash, LoRA targets, steps, losses, versions, resolved
config), config.yaml (the config, when provenance lacks it), train_log.jsonl (the last logged losses
and throughput) and, when the run folder sits inside an `altcap run` folder, the pipeline's stage
marker `.stages/train.json` (the stage's wall time). The memo prints these values, never new ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from altcap.analysis.markdown import fmt
from altcap.report.inputs import read_json

PIPELINE_STAGE_MARKER = Path(".stages") / "train.json"


@dataclass
class TrainRunFiles:
    """The training run's recorded facts and the files they came from."""

    provenance: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: float | None = None
    files: list[Path] = field(default_factory=list)


def read_train_run(train_dir: Path) -> TrainRunFiles:
    """Read provenance.json (required), config.yaml, train_log.jsonl and the pipeline stage marker.

    Args:
        train_dir: the `altcap train` output folder.

    Returns:
        The recorded facts; `files` lists every file read (hashed into the memo's provenance).
    """
    provenance_path = train_dir / "provenance.json"
    run = TrainRunFiles(
        provenance=read_json(provenance_path, "training provenance (run `altcap train`)"),
        files=[provenance_path],
    )
    run.config = run.provenance.get("config") or {}
    config_path = train_dir / "config.yaml"
    if not run.config and config_path.is_file():
        run.config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        run.files.append(config_path)
    log_path = train_dir / "train_log.jsonl"
    if log_path.is_file():
        lines = log_path.read_text(encoding="utf-8").splitlines()
        run.log_rows = [json.loads(line) for line in lines if line.strip()]
        run.files.append(log_path)
    marker = train_dir.parent / PIPELINE_STAGE_MARKER
    if marker.is_file():
        run.stage_seconds = json.loads(marker.read_text(encoding="utf-8")).get("seconds")
        run.files.append(marker)
    return run


def describe_training(run: TrainRunFiles | None) -> list[tuple[str, str]]:
    """(label, value) pairs: model, data, LoRA settings, schedule, losses and compute.

    Args:
        run: the training run's files, or None when no --train-dir was given.

    Returns:
        Pairs for the memo's "What was trained" list (entries with no recorded value are left out).
    """
    if run is None:
        return []
    prov, config = run.provenance, run.config
    pairs = [
        ("base model", _join_text(prov.get("model_id"), prov.get("family"), "family {}")),
        ("training data", _describe_data(prov)),
        ("train / val examples", _join(prov.get("train_examples"), prov.get("val_examples"))),
        ("LoRA", _describe_lora(config.get("lora") or {}, prov.get("lora_targets"))),
        ("schedule", _describe_schedule(prov, config)),
        ("losses", _describe_losses(prov, run.log_rows)),
        ("compute", _describe_compute(prov, config, run)),
    ]
    return [(label, str(value)) for label, value in pairs if value not in (None, "")]


def _join(*values: Any) -> str | None:
    return " / ".join(str(v) for v in values) if all(v is not None for v in values) else None


def _join_text(main: Any, extra: Any, template: str) -> str | None:
    if main is None:
        return None
    return f"{main} ({template.format(extra)})" if extra is not None else str(main)


def _describe_data(prov: dict[str, Any]) -> str | None:
    manifest, digest = prov.get("manifest"), prov.get("manifest_sha256")
    if manifest is None:
        return None
    return f"`{manifest}`" + (f" (sha256 `{digest[:12]}`)" if digest else "")


def _describe_lora(lora: dict[str, Any], targets: list[str] | str | None) -> str | None:
    settings = [f"{k}={lora[k]}" for k in ("r", "alpha", "dropout") if lora.get(k) is not None]
    if isinstance(targets, str):  # PEFT also accepts one regular expression over module names
        settings.append(f"targets matching `{targets}`")
    elif targets:
        settings.append("targets " + ", ".join(str(t) for t in targets))
    return "; ".join(settings) or None


def _describe_schedule(prov: dict[str, Any], config: dict[str, Any]) -> str | None:
    parts = []
    if prov.get("final_step") is not None:
        total = prov.get("total_steps")
        parts.append(f"{prov['final_step']} optimizer steps" + (f" of {total} planned" if total else ""))
    if prov.get("epochs_completed") is not None:
        parts.append(f"{prov['epochs_completed']} epochs completed")
    if config.get("batch_size") is not None and config.get("grad_accum_steps") is not None:
        parts.append(f"batch {config['batch_size']} x {config['grad_accum_steps']} accumulation steps")
    lr = (config.get("optim") or {}).get("lr")
    if lr is not None:
        parts.append(f"lr {fmt(lr)}")
    if prov.get("stopped_early"):
        parts.append("stopped early (validation loss stopped improving)")
    return ", ".join(parts) or None


def _describe_losses(prov: dict[str, Any], log_rows: list[dict[str, Any]]) -> str | None:
    parts = []
    if prov.get("best_val_loss") is not None:
        parts.append(f"best validation loss {fmt(prov['best_val_loss'])}")
    last = next((r for r in reversed(log_rows) if r.get("loss") is not None), None)
    if last is not None:
        parts.append(f"last logged training loss {fmt(last['loss'])} (step {last.get('step')})")
    return "; ".join(parts) or None


def _describe_compute(prov: dict[str, Any], config: dict[str, Any], run: TrainRunFiles) -> str | None:
    parts = []
    seconds = prov.get("wall_time_s")
    if seconds is not None:
        parts.append(f"wall time {fmt(seconds)} s")
    elif run.stage_seconds is not None:
        parts.append(f"wall time {fmt(run.stage_seconds)} s (pipeline train stage, incl. model loading)")
    else:
        parts.append("wall time not recorded by this training run")
    device = prov.get("device") or (config.get("model") or {}).get("device")
    torch_version = (prov.get("versions") or {}).get("torch")
    if device:
        parts.append(f"device {device}" + (f" (torch {torch_version})" if torch_version else ""))
    if prov.get("precision_used"):
        parts.append(f"precision {prov['precision_used']}")
    speeds = [r["samples_per_s"] for r in run.log_rows if r.get("samples_per_s")]
    if speeds:
        parts.append(f"last logged throughput {fmt(speeds[-1])} samples/s")
    return ", ".join(parts)
