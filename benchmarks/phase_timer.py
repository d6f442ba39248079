"""Where a captioning pass spends its time: image preparation, the vision tower, the language
model's prefill and its decode steps, read from module hooks.

On CUDA each span is a pair of events recorded on the stream, read after the pass, so timing adds
no synchronisation; a span is GPU-timeline time from the module's first kernel to its last,
idle gaps included (a launch-bound decode step shows as long as its launches take). On the CPU,
wall time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch

VISION_NAMES = ("visual", "vision_tower", "vision_model")
LANGUAGE_NAMES = ("language_model", "text_model")  # text_model: Idefics3 / SmolVLM


def find_module(model: Any, names: tuple[str, ...]) -> Any | None:
    """The first submodule whose attribute name is in `names` (breadth first), or None."""
    for _name, module in sorted(model.named_modules(), key=lambda item: item[0].count(".")):
        for attribute in names:
            child = getattr(module, attribute, None)
            if isinstance(child, torch.nn.Module):
                return child
    return None


class PhaseTimer:
    """Sums spans per phase: `vision`, `prefill` (LM calls over more than one position), `decode`
    (one position), and `prepare` (what `timed("prepare")` wraps)."""

    def __init__(self) -> None:
        self.cuda = torch.cuda.is_available()
        self.spans: dict[str, list[Any]] = {}
        self.handles: list[Any] = []

    def _mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _add(self, phase: str, start: Any, end: Any) -> None:
        self.spans.setdefault(phase, []).append((start, end))

    def attach(self, model: Any) -> PhaseTimer:
        """Hook the vision tower and the language model of `model` (where found)."""
        for names, phase_of in ((VISION_NAMES, lambda _n: "vision"), (LANGUAGE_NAMES, _lm_phase)):
            module = find_module(model, names)
            if module is None:
                continue
            open_spans: list[tuple[str, Any]] = []

            def before(_module, args, kwargs, phase_of=phase_of, open_spans=open_spans):
                open_spans.append((phase_of((args, kwargs)), self._mark()))

            def after(_module, _args, _kwargs, _output, open_spans=open_spans):
                phase, start = open_spans.pop()
                self._add(phase, start, self._mark())

            self.handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            self.handles.append(module.register_forward_hook(after, with_kwargs=True))
        return self

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        began = time.perf_counter()
        yield
        self.spans.setdefault(phase, []).append((began, time.perf_counter()))

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def seconds(self) -> dict[str, float]:
        """Seconds per phase (CUDA events are read here, after one synchronisation)."""
        if self.cuda:
            torch.cuda.synchronize()
        totals = {}
        for phase, spans in self.spans.items():
            total = 0.0
            for start, end in spans:
                if isinstance(start, float):
                    total += end - start
                else:
                    total += start.elapsed_time(end) / 1000
            totals[phase] = round(total, 3)
        return totals


def _lm_phase(call: tuple[tuple, dict]) -> str:
    args, kwargs = call
    tokens = kwargs.get("inputs_embeds")
    if tokens is None:
        tokens = kwargs.get("input_ids", args[0] if args else None)
    return "prefill" if tokens is not None and tokens.shape[1] > 1 else "decode"


@contextlib.contextmanager
def host_profile(name: str) -> Iterator[None]:
    """cProfile the block when $BENCH_PROFILE_DIR is set, writing `<dir>/<name>.txt` (top functions
    by cumulative and by own time): on a GPU run the host side shows where the wall time outside
    the kernels goes (waits, syncs, Python loops), which the phase spans above cannot show."""
    import os

    folder = os.environ.get("BENCH_PROFILE_DIR")
    if not folder:
        yield
        return
    import cProfile
    import io
    import pstats
    from pathlib import Path

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).strip_dirs()
        stats.sort_stats("cumulative").print_stats(70)
        stats.sort_stats("tottime").print_stats(40)
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.txt").write_text(text.getvalue(), encoding="utf-8")
