"""What the GPU benchmarks measure besides wall time: utilisation, FLOPs and model FLOPs utilisation.

- GPU utilisation: `nvidia-smi` sampled in a background thread (the % of time a kernel ran), so
  no extra Python package is needed on the lent machine.
- Peak memory: CUDA's peak allocated bytes, or the process's peak RSS on a CPU.
- FLOPs: torch's own `FlopCounterMode` over one forward + backward (matmuls and attention; the
  elementwise rest is negligible at these sizes), so model FLOPs utilisation (MFU) is
  counted FLOPs x steps/s over the chip's dense bf16 peak.
"""

from __future__ import annotations

import gc
import resource
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import torch

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, FLOP/s.
PEAK_BF16_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12}


def peak_bf16_flops(device_name: str) -> float | None:
    """The datasheet peak for a CUDA device name such as 'NVIDIA H100 80GB HBM3'; None if unknown."""
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return flops
    return None


class UtilisationSampler:
    """Samples `nvidia-smi` GPU utilisation every `interval_ms` while active (a context manager).

    `mean_percent` is None when there is no nvidia-smi (CPU runs).
    """

    def __init__(self, interval_ms: int = 200):
        self.interval_ms = interval_ms
        self.samples: list[float] = []
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> UtilisationSampler:
        if shutil.which("nvidia-smi") and torch.cuda.is_available():
            index = torch.cuda.current_device()
            command = [
                "nvidia-smi",
                f"--id={index}",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                f"-lms={self.interval_ms}",
            ]
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                continue

    def __exit__(self, *exc: Any) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._reader.join(timeout=10)

    @property
    def mean_percent(self) -> float | None:
        """Mean utilisation over the samples, or None without samples."""
        return sum(self.samples) / len(self.samples) if self.samples else None


def count_step_flops(step: Callable[[], torch.Tensor]) -> float:
    """FLOPs of one call of `step` (which runs a forward and returns the loss) plus its backward."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss = step()
        loss.backward()
    return float(counter.get_total_flops())


def release_memory() -> None:
    """Free the previous variant's model so each peak-memory figure covers one variant only (CUDA)."""
    torch.compiler.reset()  # compiled code holds on to the modules it was traced from
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated (CUDA) or the process's peak RSS (CPU, cumulative)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
