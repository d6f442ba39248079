"""Wall time of each phase of `run_train`, as provenance.json's `phase_seconds` names them:

validate           `validate_train_config` (manifest, image screening, meta-model LoRA check, first batch)
load               the Accelerator, the weights (`from_pretrained`) and the LoRA wrapping
cache_fingerprint  hashing the frozen part's weights (feature cache only)
cache_encode       preparing, encoding and writing the missing cache entries (feature cache only);
                   within it, `cache_encode.keys` (hashing the image files to find the missing
                   entries) and `cache_encode.first_batch` (until the loader workers hand over the
                   first prepared batch: nothing to encode before it)
prepare            loss module, loaders, optimizer, `accelerate.prepare`, frozen-part release, resume
fit                every training step, evaluation and checkpoint
outputs            adapter, config, curves and any merged model

A run's fixed cost (everything but the optimizer steps) decides whether a short fine-tune beats a
peer end to end, so each phase is timed, logged in one line and kept in provenance.json as
`phase_seconds`. Phases, not steps: on CUDA the device is synchronized only at a phase's end, so
its queued kernels count where they were launched and the steps run unsynchronized as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

# Display names for the log line; keys are what provenance.json records.
PHASE_LABELS = {
    "validate": "validate",
    "load": "load",
    "cache_fingerprint": "cache fingerprint",
    "cache_encode": "cache encode",
    "prepare": "loaders+prepare",
    "fit": "fit",
    "outputs": "outputs",
}


def synchronize_device() -> None:
    """Wait for queued CUDA work (no-op on CPU, or before CUDA was ever used in this process)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class PhaseTimer:
    """Seconds per named phase, summed when a phase runs more than once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body as phase `name` (its CUDA work included)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            synchronize_device()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began

    def rounded(self) -> dict[str, float]:
        """The phases in the order they ran, in seconds to the millisecond (for provenance.json)."""
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}

    def describe(self) -> str:
        """One log line, e.g. 'time: validate 0.4 s, load 2.0 s, ..., fit 11.5 s (total 19.1 s)'."""
        parts = [f"{PHASE_LABELS.get(name, name)} {seconds:.1f} s" for name, seconds in self.seconds.items()]
        # "phase.part" names time a part of a phase: counted once, in the phase.
        total = sum(seconds for name, seconds in self.seconds.items() if "." not in name)
        return f"time: {', '.join(parts)} (phases total {total:.1f} s)"
