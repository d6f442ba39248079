"""Training logs: `train_log.jsonl`, a progress bar, and TensorBoard / W&B / MLflow via accelerate.

The JSONL file is the record of truth (tests and plots read it); the trackers are for humans.
Trackers go through `Accelerator(log_with=...)` so the main-process-only logic is accelerate's.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

from altcap.cli_output import progress_bar

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"
TENSORBOARD_DIR = "tensorboard"

# report_to value -> (module to import, pip package that provides it)
_TRACKER_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def check_tracker_available(report_to: str) -> str | None:
    """A problem message when the requested tracker's package is missing, else None.

    Args:
        report_to: "tensorboard", "wandb", "mlflow" or "none".

    Returns:
        None when usable; otherwise a sentence naming the field, value and fix.
    """
    if report_to == "none":
        return None
    module, package = _TRACKER_PACKAGES[report_to]
    if importlib.util.find_spec(module) is None:
        return (
            f"report_to={report_to!r} but the {package!r} package is not installed; "
            f"run `pip install {package}` or set report_to=tensorboard / none"
        )
    return None


def read_log_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a train_log.jsonl (empty when the file does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_log(path: Path, max_step: int) -> None:
    """Drop rows after `max_step`, so a resumed run's log matches an uninterrupted one."""
    rows = [r for r in read_log_rows(path) if r["step"] <= max_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


class TrainLogger:
    """Writes log rows to JSONL and the accelerate trackers, and drives the progress bar."""

    # Waiting for data more than this share of the time between rows means the loader starves training.
    DATA_WAIT_WARNING_SHARE = 0.25

    def __init__(
        self, accelerator: Any, output_dir: Path, total_steps: int, start_step: int, num_workers: int = 0
    ):
        self.accelerator = accelerator
        self.num_workers = num_workers
        self._warned_data_wait = False
        self.path = output_dir / TRAIN_LOG
        self.is_main = accelerator.is_main_process
        self.bar = progress_bar(total_steps, "train", unit="step", initial=start_step, shown=self.is_main)
        self._last_time = time.perf_counter()
        self._samples_since = 0
        self._caption_tokens_since = 0
        self._padded_tokens_since = 0
        self._data_wait_since = 0.0
        self._gc_since = 0.0
        self._gc_started: float | None = None
        gc.callbacks.append(self._time_gc)

    def _time_gc(self, phase: str, info: dict[str, Any]) -> None:
        """Add Python's garbage-collection pauses to the row (a stall no GPU trace shows)."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self._gc_since += time.perf_counter() - self._gc_started
            self._gc_started = None

    def count_batch(self, num_samples: int, caption_tokens: int, padded_tokens: int) -> None:
        """Add a micro-batch's samples, caption tokens and label positions (see `make_collate`)."""
        self._samples_since += num_samples
        self._caption_tokens_since += caption_tokens
        self._padded_tokens_since += padded_tokens

    def count_data_wait(self, seconds: float) -> None:
        """Add time the loop waited for the data loader since the last log row (data_wait_s)."""
        self._data_wait_since += seconds

    def advance(self) -> None:
        """Move the progress bar one optimizer step (loss and lr show at each log row)."""
        self.bar.update(1)

    def write_row(self, row: dict[str, Any]) -> None:
        """Append one row (with throughput since the previous row) to JSONL and the trackers.

        `samples`, `caption_tokens` and `padded_tokens` (every label position: padding, and for
        decoder-only LMs the masked image and prompt positions too) count this process's
        micro-batches since the previous row; the rates count every process.
        """
        now = time.perf_counter()
        elapsed_s = max(now - self._last_time, 1e-9)
        processes = self.accelerator.num_processes
        row = {
            **row,
            "samples": self._samples_since,
            "elapsed_s": round(elapsed_s, 4),
            "samples_per_s": round(self._samples_since * processes / elapsed_s, 3),
            # A fast GPU starved by its loader shows here (raise num_workers), not in samples/s alone.
            "data_wait_s": round(self._data_wait_since, 4),
            "gc_s": round(self._gc_since, 4),
        }
        if self._padded_tokens_since:  # SCST samples its captions: its batches carry no token counts
            row["caption_tokens"] = self._caption_tokens_since
            row["padded_tokens"] = self._padded_tokens_since
            row["caption_tokens_per_s"] = round(self._caption_tokens_since * processes / elapsed_s, 1)
        self._warn_if_starved(self._data_wait_since, elapsed_s)
        self._last_time, self._data_wait_since, self._gc_since = now, 0.0, 0.0
        self._samples_since = self._caption_tokens_since = self._padded_tokens_since = 0
        device = self.accelerator.device
        if device.type == "cuda":
            import torch

            row["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if not self.is_main:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        metrics = {f"train/{k}": v for k, v in row.items() if isinstance(v, int | float) and k != "step"}
        self.accelerator.log(metrics, step=row["step"])
        self.bar.set_postfix(
            loss=f"{row.get('loss', float('nan')):.4f}",
            lr=f"{row.get('lr', 0):.2e}",
            samples_s=f"{row['samples_per_s']:.1f}",
        )

    def _warn_if_starved(self, waited_s: float, elapsed_s: float) -> None:
        """Say once, with the fix, when the loop spent much of its time waiting for batches."""
        if self._warned_data_wait or not self.is_main or waited_s < self.DATA_WAIT_WARNING_SHARE * elapsed_s:
            return
        self._warned_data_wait = True
        logger.warning(
            "training waited for data %.0f%% of the last %.1f s; raise num_workers (now %d) so the "
            "loader keeps up",
            100 * waited_s / elapsed_s,
            elapsed_s,
            self.num_workers,
        )

    def close(self) -> None:
        """Close the progress bar and flush trackers."""
        if self._time_gc in gc.callbacks:
            gc.callbacks.remove(self._time_gc)
        self.bar.close()
        self.accelerator.end_training()
