"""What every benchmark shares: where results go, what machine and versions ran, timing, JSON.

Every report a benchmark writes goes through `write_report`, which makes sure it records when it
ran, the hardware (CPU model, cores, memory, load at the start, GPU) and the package versions, so a
figure in docs/benchmarks.md can always be traced to the machine that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FLICKR8K = Path("/work/shared/data/flickr8k")


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (a report's `created_at`)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def utc_stamp() -> str:
    """The current UTC time as a file-name stamp, e.g. 20261125T105441."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def describe_cpu() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform's guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def read_memory_gib() -> float | None:
    """Total memory of the machine in GiB (Linux), else None."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    total_kib = next(int(line.split()[1]) for line in meminfo.read_text().splitlines() if "MemTotal" in line)
    return round(total_kib / 2**20, 1)


def describe_gpu() -> str | None:
    """The name of the current CUDA device, or None without one (torch only imported if installed)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def describe_hardware() -> dict[str, Any]:
    """CPU, cores, memory, GPU, platform and the load average now (the dev box is shared, so a
    report taken under load says so).

    Returns:
        A JSON-ready dict.
    """
    return {
        "cpu": describe_cpu(),
        "cpu_count": os.cpu_count(),
        "memory_gib": read_memory_gib(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "gpu": describe_gpu(),
        "platform": platform.platform(),
    }


def collect_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """altcap's recorded package versions plus the installed version of each `extra` distribution.

    Args:
        extra: distribution names (e.g. "pillow", "imagehash") a benchmark also depends on.

    Returns:
        name -> version.
    """
    from altcap.provenance import package_versions

    versions = package_versions()
    versions.update({name: metadata.version(name) for name in extra})
    return versions


def compute_ratios(values: Mapping[str, float], baseline: str) -> dict[str, float]:
    """Each value over the baseline's value (the baseline's own ratio is 1.0).

    Args:
        values: name -> figure where higher is better (e.g. samples/s).
        baseline: the name to divide by; must be in `values`.

    Returns:
        name -> ratio.
    """
    base = values[baseline]
    return {name: value / base for name, value in values.items()}


def write_report(out: Path, report: dict[str, Any], extra_versions: Iterable[str] = ()) -> Path:
    """Write a benchmark report as indented JSON, adding `created_at`, `hardware` and `versions`
    where the benchmark did not record them itself.

    Args:
        out: the JSON path (parent folders are created).
        report: the benchmark's figures; keys it already has are kept as they are.
        extra_versions: distributions to record besides altcap's usual ones.

    Returns:
        `out`.
    """
    full = {"created_at": utc_now(), **report}
    full.setdefault("hardware", describe_hardware())
    full.setdefault("versions", collect_versions(extra_versions))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return out


def synchronize(device: Any = None) -> None:
    """Wait for queued CUDA work (no-op on the CPU)."""
    import torch

    # CUDA kernels run asynchronously; without a sync the timer stops before the work is done.
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def time_median_s(call: Callable[[], Any], repeats: int, device: Any = None, warmup: int = 2) -> float:
    """Median wall seconds of `call` over `repeats` runs after `warmup` untimed ones.

    Args:
        call: the work to time.
        repeats: timed runs (>= 1).
        device: where the work runs; CUDA is synchronised around every timed run.
        warmup: untimed runs first (allocations, autotuning, compiles).

    Returns:
        The median of the timed runs, in seconds.
    """
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        synchronize(device)
        began = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]
