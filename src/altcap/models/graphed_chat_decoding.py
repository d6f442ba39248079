"""A chat VLM's decode steps replayed as CUDA graphs inside transformers' `generate` (greedy and
sampling; beam search runs as it always did).

Why by hand: on an H100, Qwen2.5-VL-3B's greedy decode steps at batch 256 took 26 ms where reading
the weights and the cache takes ~3 ms (session 14, `docs/benchmarks.md`): the host launching a
step's ~1,000 kernels one by one. A CUDA graph launches them with one call. transformers' own
answer, a static cache compiled by inductor, fuses kernels (other bf16 rounding) and compiles for
minutes; here a graph holds the very kernels eager mode launches.

How: `generate` runs on a `StaticCache` (addresses fixed; its position counter lives on the GPU and
advances inside the graph) sized to the batch's prompt plus its new tokens, rounded up to 64 so
batches of similar length share one cache and one graph. transformers then hands the language model
(`model.get_decoder()`) inputs of the same shapes at every decode step (one token's embeddings,
positions and a mask over the whole cache), so ONE graph replays every step of a batch shape.
Only that call is replaced: the VLM's own forward (embeddings, rope positions, lm_head), the logits
processors and the stopping rules run unchanged around it, eagerly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from altcap.models.graph_steps import (
    StepGraph,
    cache_argument,
    capture_graph,
    deferred_stop_checks,
    forward_replaced,
    generate_cache_keyword,
    own_forward,
    static_like,
    step_inputs,
    with_leaves,
)
from altcap.models.graphed_generate import cuda_device_problem

logger = logging.getLogger(__name__)
CAPACITY_STEP = 64  # cache lengths are rounded up to this, so nearby prompt lengths share graphs


def cache_capacity(prompt_length: int, max_new_tokens: int) -> int:
    """Cache positions for a batch: prompt + new tokens + 1 (the step a deferred stop check runs
    past the end), rounded up to `CAPACITY_STEP`."""
    needed = prompt_length + max_new_tokens + 1
    return -(-needed // CAPACITY_STEP) * CAPACITY_STEP


class GraphedChatDecoder:
    """Replays a decoder-only language model's one-token steps as CUDA graphs.

    Args:
        decoder: the language model inside the VLM (`model.get_decoder()`), whose call is replaced.
        use_cuda_graphs: capture real graphs (needs CUDA); False re-runs each step eagerly on the
            same fixed tensors, to test everything but the capture on a CPU.
    """

    def __init__(self, decoder: Any, use_cuda_graphs: bool = True):
        self.decoder = decoder
        self.use_cuda_graphs = use_cuda_graphs
        self.caches: dict[tuple, Any] = {}  # (batch, capacity, dtype, device) -> StaticCache
        self.graphs: dict[tuple, StepGraph] = {}
        self.static: dict[tuple, torch.Tensor] = {}
        self.cache: Any = None
        self.pool = None
        self.capture_stream = None
        self.captured = 0

    def cache_for(self, model: Any, batch: int, capacity: int) -> Any:
        """The reusable static cache for this batch shape, emptied (same buffers, so same graphs)."""
        from transformers import StaticCache

        key = (batch, capacity, model.dtype, str(model.device))
        if key not in self.caches:
            self.caches[key] = StaticCache(config=model.config, max_cache_len=capacity)
        cache = self.caches[key]
        cache.reset()
        return cache

    def _eager(self, *args: Any, **kwargs: Any) -> Any:
        return own_forward(self.decoder, *args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Stands in for the decoder's forward while active: one-token steps on the active cache
        replay a graph, everything else (the prefill) runs eagerly."""
        keyword = cache_argument(kwargs, self.cache)
        embeds = kwargs.get("inputs_embeds")
        if args or keyword is None or embeds is None or embeds.shape[1] != 1:
            return self._eager(*args, **kwargs)
        rest = {k: v for k, v in kwargs.items() if k != keyword}
        inputs, signature = step_inputs(rest)
        key = (id(self.cache), signature)
        static = {path: static_like(self.static, path, value) for path, value in inputs.items()}
        for path, value in inputs.items():
            static[path].copy_(value)
        step = self.graphs.get(key)
        if step is None:
            step = self.graphs[key] = self._capture(keyword, rest, static)
            return step.outputs  # the capture's eager run was this step
        return step.replay()

    def _capture(self, keyword: str, rest: dict[str, Any], static: dict[tuple, torch.Tensor]) -> StepGraph:
        static_kwargs = {**with_leaves(rest, static), keyword: self.cache}
        # Run once eagerly first: this IS the step (it writes the cache and advances its counter),
        # and lazy initialisation (cuBLAS workspaces, ...) must not happen during capture.
        outputs = self._eager(**static_kwargs)
        hidden = outputs.last_hidden_state

        def run() -> None:
            hidden.copy_(self._eager(**static_kwargs).last_hidden_state)

        # Recorded, not run: the cache and its position counter are untouched by the capture.
        graph = capture_graph(self, run) if self.use_cuda_graphs else None
        self.captured += 1
        return StepGraph(run, outputs, graph)

    @contextlib.contextmanager
    def active(self, cache: Any) -> Iterator[None]:
        """Route the decoder's calls through the graphs for one `generate` call on `cache`."""
        self.cache = cache
        try:
            with forward_replaced(self.decoder, self.forward), deferred_stop_checks(self.use_cuda_graphs):
                yield
        finally:
            self.cache = None


def graphed_chat_decoder_for(model: Any, use_cuda_graphs: bool = True) -> GraphedChatDecoder:
    """The model's graphed decoder, made on first use and kept on the model (graphs outlive a batch)."""
    decoder = getattr(model, "_altcap_graphed_chat_decoder", None)
    if decoder is None:
        decoder = GraphedChatDecoder(model.get_decoder(), use_cuda_graphs)
        model._altcap_graphed_chat_decoder = decoder
    return decoder


def static_steps_problem(config: Any, capacity: int) -> str | None:
    """Why one graph cannot replay every step of this language model (None: it can).

    A static cache's sliding-window layers keep a Python counter that a replay does not advance; it
    only picks their branch, which stays the same while the window never fills (capacity <= window).
    Linear-attention layers (Qwen3.5) keep host-side state too: those models decode without graphs.
    """
    text = config.get_text_config(decoder=True)
    types = set(getattr(text, "layer_types", None) or ("full_attention",))
    if other := types - {"full_attention", "sliding_attention"}:
        return f"its {', '.join(sorted(other))} layers keep host-side state"
    window = getattr(text, "sliding_window", None)
    if "sliding_attention" in types and window is not None and capacity > window:
        return f"{capacity} cache positions exceed its {window}-token sliding window"
    return None


def chat_graphs_problem(model: Any, processor: Any) -> str | None:
    """Why `generation.cuda_graphs` cannot run on this chat VLM (with the fix), or None."""
    return cuda_device_problem(model)


def generate_with_chat_graphs(
    model: Any, model_inputs: Mapping[str, Any], generation: Mapping[str, Any], use_cuda_graphs: bool = True
) -> torch.Tensor:
    """`model.generate` with the language model's one-token steps replayed as CUDA graphs.

    Args:
        model: the chat VLM (or its PEFT wrapper); its own `generate` runs around the graphs.
        model_inputs: generate inputs (ids, mask, pixels, ...; no labels).
        generation: `model.generate` keyword arguments, without `cuda_graphs`; beam search
            (`num_beams` > 1) runs without graphs.
        use_cuda_graphs: False = the same path replayed eagerly (CPU tests).

    Returns:
        The generated ids, as `model.generate` returns them.

    Raises:
        ValueError: graphs requested on a model that is not on a CUDA device.
    """
    if (generation.get("num_beams") or 1) > 1:
        return model.generate(**model_inputs, **generation)
    if use_cuda_graphs and (problem := cuda_device_problem(model)):
        raise ValueError(problem)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = graphed_chat_decoder_for(base, use_cuda_graphs)
    ids = model_inputs["input_ids"]
    max_new_tokens = generation.get("max_new_tokens") or base.generation_config.max_new_tokens
    rows = ids.shape[0] * (generation.get("num_return_sequences") or 1)
    capacity = cache_capacity(ids.shape[1], max_new_tokens)
    if problem := static_steps_problem(base.config, capacity):
        logger.info("decoding without CUDA graphs: %s", problem)
        return model.generate(**model_inputs, **generation)
    cache = decoder.cache_for(base, rows, capacity)
    keyword = generate_cache_keyword()
    with decoder.active(cache):
        # disable_compile: generate would otherwise compile the forward for a static cache.
        return model.generate(**model_inputs, **generation, **{keyword: cache}, disable_compile=True)
