"""What the chat-VLM benchmarks share: the model folder, the data, one child process per measured
side, peak-memory readings and the training-log summary.

Each side (a recipe, TRL, altcap) runs in its own Python process: CUDA peak-memory counters are
per process, a crash or out-of-memory error in one side leaves the others' figures, and libraries
that patch model classes globally (liger-kernel) cannot leak into the other side.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.chat_archs import build_chat_arch
from benchmarks.chat_data import build_corpus, make_captions, write_manifest, write_random_images

TAIL_CHARS = 3000
# How often both training sides read their loss, which waits for the GPU to finish the step: TRL
# every 10 steps (logging_steps), altcap every 10 (log_every_n_steps; its default). Session 17's
# altcap side read it every step, a wait per step that TRL's side did not pay.
LOG_EVERY_N_STEPS = 10


def pick_device() -> str:
    """ "cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def ensure_model(name: str, folder: Path, tiny: bool) -> tuple[Path, float]:
    """The random-weight folder of `name`, built on the GPU (or CPU) unless `folder` has one already.

    Args:
        name: one of `chat_archs.CHAT_ARCHS`.
        folder: where the model is (or goes).
        tiny: tiny sizes (CPU tests).

    Returns:
        (folder, seconds spent building; 0 when reused).
    """
    if (folder / "config.json").is_file():
        return folder, 0.0
    began = time.perf_counter()
    build_chat_arch(name, folder, pick_device(), build_corpus(), tiny=tiny)
    return folder, time.perf_counter() - began


def write_train_data(
    root: Path, count: int, image_size: tuple[int, int], seed: int = 0, lengths: str = "20-30"
) -> Path:
    """Random images + captions of realistic length as an altcap manifest (all train split).

    Args:
        root: folder for the images and manifest.jsonl.
        count: examples.
        image_size: (width, height) of every image.
        seed: image and caption seed.
        lengths: the caption length mix (`chat_data.make_captions`).

    Returns:
        The manifest path.
    """
    images = write_random_images(root / "images", count, image_size, seed)
    name = f"manifest-{count}-{image_size[0]}x{image_size[1]}-{lengths}.jsonl"
    return write_manifest(root / name, images, make_captions(count, seed, lengths=lengths))


def read_gpu_peaks() -> dict[str, Any]:
    """This process's peak CUDA memory (allocated by tensors, reserved by the caching allocator) in
    GB, and the card's name; None values on the CPU."""
    if not torch.cuda.is_available():
        return {"peak_allocated_gb": None, "peak_reserved_gb": None, "card": None}
    return {
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2),
        "card": torch.cuda.get_device_name(),
    }


@contextlib.contextmanager
def keep_earlier_peaks() -> Iterator[list[float]]:
    """Record `max_memory_allocated` (GB) each time something resets the CUDA peak counter
    (`run_train` does after filling a feature cache, so its training peak leaves the fill out)."""
    earlier: list[float] = []
    reset = torch.cuda.reset_peak_memory_stats

    def recording_reset(*args: Any, **kwargs: Any) -> None:
        earlier.append(round(torch.cuda.max_memory_allocated() / 1e9, 2))
        reset(*args, **kwargs)

    torch.cuda.reset_peak_memory_stats = recording_reset
    try:
        yield earlier
    finally:
        torch.cuda.reset_peak_memory_stats = reset


def summarize_log(rows: list[dict[str, Any]], skip: int) -> dict[str, Any]:
    """samples/s over altcap's train-log rows after the first `skip` (warm-up), and the largest
    per-row peak memory the log recorded.

    Args:
        rows: `train_log.jsonl` rows (one per logged step: every LOG_EVERY_N_STEPS and each epoch's end).
        skip: leading rows left out of the rate (first steps meet allocator and kernel warm-up).

    Returns:
        steps, timed steps, samples/s, the log's peak memory in GB (None on the CPU).
    """
    steps = [row for row in rows if "samples" in row and "elapsed_s" in row]
    timed = steps[skip:] or steps
    elapsed = sum(row["elapsed_s"] for row in timed)
    peaks = [row["peak_gpu_memory_mb"] for row in steps if "peak_gpu_memory_mb" in row]
    return {
        "logged_steps": len(steps),
        "timed_steps": len(timed),
        "samples_per_s": round(sum(row["samples"] for row in timed) / elapsed, 3) if elapsed else None,
        "log_peak_allocated_gb": round(max(peaks) * 2**20 / 1e9, 2) if peaks else None,
        # Label positions per sample (decoder-only: image + prompt + caption, padded per batch).
        "mean_padded_length": round(
            sum(row.get("padded_tokens", 0) for row in timed) / max(1, sum(row["samples"] for row in timed)),
            1,
        ),
    }


def run_child(
    module: str, argv: list[str], out: Path, timeout_s: float, pythonpath: str | None = None
) -> dict[str, Any]:
    """Run `python -m <module> <argv> --result <out>` and read the JSON the child wrote.

    Args:
        module: e.g. "benchmarks.recipe_memory".
        argv: the child's options.
        out: where the child writes its result JSON.
        timeout_s: the child is killed after this long.
        pythonpath: the child's PYTHONPATH instead of this process's (another library set).

    Returns:
        The child's result, or {"error": ..., "stderr_tail": ...} when it failed or wrote none.
    """
    command = [sys.executable, "-m", module, *argv, "--result", str(out)]
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(command[2:])}", flush=True)
    began = time.perf_counter()
    try:
        env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as err:
        code, stderr = "timeout", (err.stderr or b"").decode(errors="replace") if err.stderr else ""
    seconds = round(time.perf_counter() - began, 1)
    if code == 0 and out.is_file():
        result = json.loads(out.read_text(encoding="utf-8"))
        result["process_wall_s"] = seconds
        return result
    tail = stderr[-TAIL_CHARS:]
    print(tail, file=sys.stderr, flush=True)
    return {"error": f"child exited with {code}", "process_wall_s": seconds, "stderr_tail": tail}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """A child's result (plain JSON; the parent's report adds hardware and versions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def card_slug() -> str:
    """A file-name tag for the card, e.g. 'h100' or 'cpu'."""
    name = (torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu").lower()
    for tag in ("h200", "h100", "a100", "l40s", "a10g", "l4", "t4"):
        if tag in name:
            return tag
    return name.replace("nvidia ", "").replace(" ", "-")
