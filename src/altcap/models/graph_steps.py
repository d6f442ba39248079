"""What the graphed passes share (`graphed_decoding.py` for encoder-decoder LMs,
`graphed_chat_decoding.py` for chat VLMs, `graphed_chat_training.py` for their training passes):
the stand-in forward that routes a model's calls, a step's inputs as fixed tensors, the key of its
graph, the capture itself, and transformers' deferred stop check turned on for CUDA."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch


def replace_forward(module: torch.nn.Module, stand_in: Callable[..., Any]) -> Callable[[], None]:
    """Route `module`'s calls through `stand_in`; returns what puts the forward before it back.

    The stand-in shows the real forward's parameters: `generate()` and the VLMs read them to decide
    what to pass. Another stand-in already there (training's graphs under decoding's) comes back."""
    before = module.__dict__.get("forward")

    def forward(*args: Any, **kwargs: Any) -> Any:
        return stand_in(*args, **kwargs)

    forward.__signature__ = inspect.signature(module.forward)
    module.forward = forward

    def restore() -> None:
        if before is None:
            del module.forward  # back to the class's own forward
        else:
            module.forward = before

    return restore


@contextlib.contextmanager
def forward_replaced(module: torch.nn.Module, stand_in: Callable[..., Any]) -> Iterator[None]:
    """`replace_forward` for the duration of a block."""
    restore = replace_forward(module, stand_in)
    try:
        yield
    finally:
        restore()


def own_forward(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """The module's class forward, past any stand-in on the instance (a stand-in's eager passes)."""
    return type(module).forward(module, *args, **kwargs)


def tensor_leaves(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):  # also transformers' ModelOutput (encoder_outputs)
        for key, item in value.items():
            yield from tensor_leaves(item, (*path, key))
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            yield from tensor_leaves(item, (*path, index))


def with_leaves(value: Any, leaves: dict[tuple, torch.Tensor], path: tuple = ()) -> Any:
    """`value` with each tensor replaced by `leaves[its path]` (containers rebuilt, others kept)."""
    if isinstance(value, torch.Tensor):
        return leaves[path]
    if isinstance(value, dict):
        rebuilt = {key: with_leaves(item, leaves, (*path, key)) for key, item in value.items()}
        return type(value)(**rebuilt) if type(value) is not dict else rebuilt
    if isinstance(value, tuple | list):
        return type(value)(with_leaves(item, leaves, (*path, i)) for i, item in enumerate(value))
    return value


@dataclass
class StepGraph:
    """One decode step: the captured graph, or None off CUDA, where a replay re-runs the step on the
    fixed tensors (what lets the CPU tests check the bookkeeping); `outputs` is what it returns."""

    run: Callable[[], Any]
    outputs: Any
    graph: Any = None

    def replay(self) -> Any:
        if self.graph is None:
            self.run()
        else:
            self.graph.replay()
        return self.outputs


def capture_graph(owner: Any, run: Callable[[], None]) -> Any:
    """Record `run` as a CUDA graph in `owner.pool` on `owner.capture_stream` (made on first use): one
    stream for all of an owner's graphs, since the allocator caches blocks per stream."""
    graph = torch.cuda.CUDAGraph()
    owner.pool = owner.pool or torch.cuda.graph_pool_handle()
    owner.capture_stream = owner.capture_stream or torch.cuda.Stream()
    with torch.cuda.graph(graph, pool=owner.pool, stream=owner.capture_stream):
        run()
    return graph


def step_inputs(rest: dict[str, Any]) -> tuple[dict[tuple, torch.Tensor], tuple]:
    """A step's tensor arguments by path, and what its graph is captured for: their shapes and
    dtypes, and the values of its other arguments."""
    inputs = dict(tensor_leaves(rest))
    shapes = tuple((path, tuple(t.shape), t.dtype) for path, t in inputs.items())
    others = tuple(sorted((k, repr(v)) for k, v in rest.items() if not list(tensor_leaves(v))))
    return inputs, (shapes, others)


def static_like(store: dict[tuple, torch.Tensor], path: tuple, value: torch.Tensor) -> torch.Tensor:
    """The fixed tensor in `store` that `value` at `path` is copied into before a replay (made once
    per path, shape and dtype)."""
    key = (path, tuple(value.shape), value.dtype)
    if key not in store:
        store[key] = torch.empty_like(value)
    return store[key]


def cache_argument(kwargs: dict[str, Any], cache: Any) -> str | None:
    """The keyword under which a forward call passes `cache` (transformers 5 renamed
    `past_key_values` to `cache`), or None when it passes another cache or none."""
    return next((k for k in ("cache", "past_key_values") if kwargs.get(k) is cache), None)


def generate_cache_keyword() -> str:
    """The keyword the installed transformers' `generate` takes a cache under."""
    from transformers.generation import utils as generation_utils

    return "cache" if "cache" in getattr(generation_utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


@contextlib.contextmanager
def deferred_stop_checks(enabled: bool = True) -> Iterator[None]:
    """Let greedy search read its stop flag one step late on CUDA too.

    transformers' greedy loop waits for every step to learn whether to stop, so the GPU idles
    while the host launches the next step's graph (~3 ms for T5-XL's ~1,800 nodes). Its
    `DeferredStopCheck` reads the flag a step late and undoes the extra step; transformers
    enables it only on Apple's mps for now ("we should enable it for cuda if we observe perf
    gains"). The extra step writes one more cache position, which the caller allocates.

    Args:
        enabled: False leaves the check as it is (torch events, which it records, need CUDA).
    """
    try:
        from transformers.generation.utils import DeferredStopCheck
    except ImportError:  # a release without it: the plain per-step check
        yield
        return
    if not enabled:
        yield
        return

    def is_supported(device: Any, cache: Any, cache_is_returned: bool, is_assistant: bool) -> bool:
        return device.type == "cuda" and not cache_is_returned and not is_assistant

    original = DeferredStopCheck.__dict__["is_supported"]
    DeferredStopCheck.is_supported = staticmethod(is_supported)
    try:
        yield
    finally:
        DeferredStopCheck.is_supported = original
