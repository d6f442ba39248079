"""What the profiler saw: per-step kernel time, launches, GPU-busy fraction, the top ops and
kernels, and a breakdown of peak memory (used by `python -m benchmarks.profile_gpu`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from tqdm.auto import tqdm

from benchmarks.common import synchronize

TOP_ROWS = 25
COPY_PREFIXES = ("Memcpy", "Memset")  # device events that are copies, not kernel launches
CUDA_FIELDS = ("step_kernel_time_ms", "gpu_busy_fraction", "kernel_launches_per_step")
TABLES = ("top_ops_by_self_cuda", "top_kernels_by_self_cuda", "top_ops_by_self_cpu")


def profile_steps(step: Callable[[], Any], warmup_steps: int, steps: int) -> tuple[Any, list[float], list]:
    """Warm-up steps, then `steps` profiled ones; returns (profiler, wall seconds per step, outputs)."""
    for _ in tqdm(range(warmup_steps), desc="warm-up"):
        step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.reset_peak_memory_stats()
    walls_s, outputs = [], []
    with torch.profiler.profile(activities=activities, record_shapes=False, profile_memory=True) as prof:
        for _ in tqdm(range(steps), desc="profiled steps"):
            synchronize()
            began = time.perf_counter()
            with torch.profiler.record_function("altcap_step"):
                outputs.append(step())
            synchronize()
            walls_s.append(time.perf_counter() - began)
    return prof, walls_s, outputs


def summarize_events(prof: Any, steps: int, wall_s: float) -> dict[str, Any]:
    """Per-step kernel time, launches and busy fraction, plus the top tables (ms per step)."""
    # Raw events, not key_averages(): there an op and the kernel it launched carry the same self
    # CUDA time, so one table would count it twice. Rows: [calls, self CPU ms, self CUDA ms].
    # GPU-side copies of record_function ranges are CUDA events too, spanning whole steps: skipped
    # (pytorch/pytorch#130730).
    ops: dict[str, list[float]] = {}
    kernels: dict[str, list[float]] = {}
    launches = 0
    for event in prof.events():
        is_device = event.device_type == DeviceType.CUDA
        if event.name != "[memory]" and not (is_device and event.is_user_annotation):
            row = (kernels if is_device else ops).setdefault(event.name, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += event.self_cpu_time_total / 1e3
            row[2] += event.self_device_time_total / 1e3
            launches += is_device and not event.name.startswith(COPY_PREFIXES)
    kernel_ms = sum(row[2] for row in kernels.values()) / steps
    tables = (rank_rows(ops, 2, steps), rank_rows(kernels, 2, steps), rank_rows(ops, 1, steps))
    result = dict(zip(CUDA_FIELDS, (kernel_ms, kernel_ms / 1e3 / wall_s, launches / steps), strict=True))
    result.update(zip(TABLES, tables, strict=True))
    if not torch.cuda.is_available():
        result.update(dict.fromkeys([*CUDA_FIELDS, *TABLES[:2]]))
    return result


def rank_rows(rows: dict[str, list[float]], col: int, steps: int) -> list[dict[str, Any]]:
    """The TOP_ROWS names with the largest `col` (1 = self CPU, 2 = self CUDA ms), per step."""
    share = 100 / (sum(row[col] for row in rows.values()) or 1.0)
    ranked = sorted(rows.items(), key=lambda item: item[1][col], reverse=True)[:TOP_ROWS]
    key = "self_cuda_ms_per_step" if col == 2 else "self_cpu_ms_per_step"
    return [
        {"name": name, "calls_per_step": row[0] / steps, key: row[col] / steps, "percent": row[col] * share}
        for name, row in ranked
    ]  # fmt: skip


def summarize_memory(model: Any, optimizer: Any | None) -> dict[str, int | None]:
    """Peak allocated memory (CUDA) and what parameters, gradients and optimizer state take of it."""

    def count_bytes(tensors: Any) -> int:  # meta tensors: the released frozen modules hold no memory
        return sum(t.numel() * t.element_size() for t in tensors if t.device.type != "meta")

    trainable = count_bytes(p for p in model.parameters() if p.requires_grad)
    frozen = count_bytes(p for p in model.parameters() if not p.requires_grad)
    states = optimizer.state.values() if optimizer is not None else []
    optimizer_bytes = count_bytes(t for s in states for t in s.values() if isinstance(t, torch.Tensor))
    grads = trainable if optimizer is not None else 0  # freed by zero_grad, but alive at backward's peak
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    rest = None if peak is None else peak - trainable - frozen - grads - optimizer_bytes
    return {
        "peak_allocated_bytes": peak, "parameters_trainable_bytes": trainable,
        "parameters_frozen_bytes": frozen, "gradients_bytes": grads,
        "optimizer_state_bytes": optimizer_bytes, "activations_and_workspace_bytes": rest,
    }  # fmt: skip
