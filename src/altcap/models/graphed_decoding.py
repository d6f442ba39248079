"""Decode steps of an encoder-decoder LM (BLIP-2 / InstructBLIP Flan-T5) replayed as CUDA graphs.

Why by hand: on the H100 profile of BLIP-2 Flan-T5-XL beam search the GPU idled half of every
step while Python launched the ~1,800 kernels of 24 T5 decoder layers. A CUDA graph launches a
step's kernels with one call. transformers' own answer, a static cache compiled by inductor, fuses
kernels and so rounds bf16 differently (greedy ids changed in 93 of 256 rows), and it made beam
search slower. Here a graph holds the kernels eager mode launches for a step; transformers' own
search loops run unchanged around it, only the model call is replayed.

How: the KV cache lives in buffers allocated once (`PreallocatedLayer`), so every step reads and
writes fixed addresses; decode step t (t tokens already cached) gets its own graph, captured the
first time that shape is seen, because its attention spans t + 1 keys; inputs are copied into
fixed tensors before a replay. Batches keep one size (`altcap caption` pads the last one).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache

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


class PreallocatedLayer(DynamicLayer):
    """One layer's K/V in buffers that outlive a `generate` call; `keys`/`values` are views of the
    first `length` positions, so attention sees exactly what a dynamic cache would hold.

    Args:
        capacity: positions to allocate; None = the length of the first update (cross-attention:
            the encoder output is written once, at the first decoder step).
    """

    def __init__(self, capacity: int | None = None):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        # Two buffer pairs: a beam-search reorder gathers the live positions from one into the
        # other, which halves the copying of an in-place reorder (gather out, then copy back).
        self.key_buffers: list[torch.Tensor | None] = [None, None]
        self.value_buffers: list[torch.Tensor | None] = [None, None]
        self.current = 0
        self.reallocations = 0

    @property
    def key_buffer(self) -> torch.Tensor | None:
        return self.key_buffers[self.current]

    @property
    def value_buffer(self) -> torch.Tensor | None:
        return self.value_buffers[self.current]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def _ensure_buffers(self, key_states: torch.Tensor) -> None:
        batch, heads, new, head_dim = key_states.shape
        capacity = self.capacity if self.capacity is not None else new
        wanted = (batch, heads, capacity, head_dim)
        buffer = self.key_buffers[0]
        if (
            buffer is None
            or buffer.shape != wanted
            or buffer.dtype != key_states.dtype
            or buffer.device != key_states.device
        ):
            self.key_buffers = [key_states.new_empty(wanted), None]
            self.value_buffers = [key_states.new_empty(wanted), None]
            self.reallocations += 1

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.length == 0:
            self.current = 0
            self._ensure_buffers(key_states)
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            raise ValueError(
                f"KV cache holds {self.key_buffer.shape[-2]} positions but step needs {end}; "
                "raise max_new_tokens of the graphed decoder"
            )
        self.key_buffer[:, :, self.length : end].copy_(key_states)
        self.value_buffer[:, :, self.length : end].copy_(value_states)
        self.set_length(end)
        return self.keys, self.values

    def set_length(self, length: int) -> None:
        """Point `keys`/`values` at the first `length` positions (after a replay, which runs no Python)."""
        self.length = length
        self.keys = self.key_buffer[:, :, :length]
        self.values = self.value_buffer[:, :, :length]

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return -1 if self.key_buffer is None else self.key_buffer.shape[-2]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        # Gathered into the other buffer pair, whose fixed addresses the next step's graph reads
        # (graphs are keyed by which pair is current).
        if not self.length:
            return
        other = 1 - self.current
        if self.key_buffers[other] is None:
            self.key_buffers[other] = torch.empty_like(self.key_buffers[0])
            self.value_buffers[other] = torch.empty_like(self.value_buffers[0])
        live = slice(0, self.length)
        beam_idx = beam_idx.to(self.key_buffer.device)
        for buffers in (self.key_buffers, self.value_buffers):
            torch.index_select(buffers[self.current][:, :, live], 0, beam_idx, out=buffers[other][:, :, live])
        self.current = other
        self.set_length(self.length)

    def reset(self) -> None:
        self.length, self.keys, self.values = 0, None, None

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the graphed decoder's cache cannot be cropped (assisted decoding)")

    def batch_repeat_interleave(self, *args: Any) -> None:
        raise NotImplementedError("the graphed decoder's cache cannot change its batch size")

    batch_select_indices = batch_repeat_interleave


class PreallocatedEncoderDecoderCache(EncoderDecoderCache):
    """Self-attention and cross-attention caches over fixed buffers; beam search reorders only the
    self-attention part (every beam of an image shares one encoder output, see
    `text_inputs.beam_search_cache_without_cross_reorder`)."""

    def __init__(self, num_layers: int, max_decoder_tokens: int):
        self_cache = DynamicCache()
        self_cache.layers = [PreallocatedLayer(max_decoder_tokens) for _ in range(num_layers)]
        self_cache.layer_class_to_replicate = None
        cross_cache = DynamicCache()
        cross_cache.layers = [PreallocatedLayer() for _ in range(num_layers)]
        cross_cache.layer_class_to_replicate = None
        super().__init__(self_cache, cross_cache)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)

    def start(self) -> None:
        """Empty the cache for a new `generate` call; the buffers stay."""
        for layer in (*self.self_attention_cache.layers, *self.cross_attention_cache.layers):
            layer.reset()
        self.is_updated = dict.fromkeys(range(len(self.cross_attention_cache.layers)), False)

    def set_decoder_length(self, length: int) -> None:
        for layer in self.self_attention_cache.layers:
            layer.set_length(length)

    def buffers_in_use(self) -> tuple[int, ...]:
        """Which buffer pair each self-attention layer reads now: part of a step graph's key."""
        return tuple(layer.current for layer in self.self_attention_cache.layers)

    def buffers_version(self) -> int:
        """Changes whenever a buffer was reallocated: graphs captured before then are stale."""
        layers = (*self.self_attention_cache.layers, *self.cross_attention_cache.layers)
        return sum(layer.reallocations for layer in layers)


class GraphedDecoder:
    """Replays an encoder-decoder LM's decode steps as CUDA graphs inside transformers' `generate`.

    Use `with decoder.active(max_new_tokens) as cache_kwargs: lm_owner.generate(..., **cache_kwargs)`;
    the first decoder step of each call (which fills the cross-attention cache) runs eagerly.

    Args:
        lm: the encoder-decoder language model whose `forward` is replayed (e.g. the T5 of BLIP-2).
        use_cuda_graphs: capture real graphs (needs CUDA); False re-runs the step eagerly on the
            same fixed tensors, to test everything but the capture on a CPU.
    """

    def __init__(self, lm: Any, use_cuda_graphs: bool = True):
        self.lm = lm
        self.use_cuda_graphs = use_cuda_graphs
        self.num_layers = lm.config.num_decoder_layers or lm.config.num_layers
        self.cache: PreallocatedEncoderDecoderCache | None = None
        self.graphs: dict[tuple, StepGraph] = {}
        # Shared by every step's graph: inputs (encoder output, masks: copied once per batch) and
        # the logits buffer, which transformers copies out before the next step.
        self.static: dict[tuple, torch.Tensor] = {}
        self.sources: dict[tuple, int] = {}
        self.pool = None
        self.capture_stream = None
        self.captured = 0
        self._version = -1
        self._fresh_batch = False

    def _drop_graphs(self) -> None:
        # A memory pool dies with its last graph; a new capture needs a new pool.
        self.graphs, self.static, self.sources, self.pool = {}, {}, {}, None

    def _eager_forward(self, *args: Any, **kwargs: Any) -> Any:
        return own_forward(self.lm, *args, **kwargs)

    def forward(self, **kwargs: Any) -> Any:
        """Stands in for `lm.forward` while active: decode steps replay a graph, the rest run eagerly."""
        keyword = cache_argument(kwargs, self.cache)
        if keyword is None or self.cache.get_seq_length() == 0:
            return self._eager_forward(**kwargs)
        if self.cache.buffers_version() != self._version:
            self._drop_graphs()  # stale addresses
            self._version = self.cache.buffers_version()
        past = self.cache.get_seq_length()
        rest = {k: v for k, v in kwargs.items() if k != keyword}
        inputs, signature = step_inputs(rest)
        key = (past, self.cache.buffers_in_use(), signature)
        static = {path: static_like(self.static, path, value) for path, value in inputs.items()}
        for path, value in inputs.items():
            # Encoder outputs and masks are the same tensors at every step of a batch: copied once.
            if self._fresh_batch or self.sources.get(path) != value.data_ptr():
                static[path].copy_(value)
                self.sources[path] = value.data_ptr()
        self._fresh_batch = False
        step = self.graphs.get(key)
        if step is None:
            step = self.graphs[key] = self._capture(keyword, rest, static, past)
        outputs = step.replay()
        self.cache.set_decoder_length(past + 1)
        return outputs

    def _capture(
        self, keyword: str, rest: dict[str, Any], static: dict[tuple, torch.Tensor], past: int
    ) -> StepGraph:
        static_kwargs = {**with_leaves(rest, static), keyword: self.cache}
        # Runs eagerly once first: lazy initialisation (cuBLAS workspaces, ...) must not happen
        # during capture, and the outputs object it returns is the template replays hand back.
        outputs = self._eager_forward(**static_kwargs)
        logits = static_like(self.static, ("logits",), outputs.logits)
        logits.copy_(outputs.logits)
        outputs.logits = logits
        self.cache.set_decoder_length(past)

        def run() -> None:
            logits.copy_(self._eager_forward(**static_kwargs).logits)
            self.cache.set_decoder_length(past)

        graph = capture_graph(self, run) if self.use_cuda_graphs else None
        self.captured += 1
        return StepGraph(run, outputs, graph)

    @contextlib.contextmanager
    def active(self, max_new_tokens: int) -> Iterator[dict[str, Any]]:
        """Route the LM's calls through the graphs for one `generate` call.

        Args:
            max_new_tokens: the call's token budget (sizes the self-attention cache once).

        Yields:
            The cache keyword argument to pass to `generate`.
        """
        # +1 for the decoder start token, +1 for the step a deferred stop check runs past the end.
        capacity = max_new_tokens + 2
        if self.cache is None or self.cache.self_attention_cache.layers[0].capacity < capacity:
            self.cache = PreallocatedEncoderDecoderCache(self.num_layers, capacity)
            self._drop_graphs()
        self.cache.start()
        self._fresh_batch = True
        keyword = generate_cache_keyword()

        def route(*args: Any, **kwargs: Any) -> Any:
            return self.forward(**kwargs) if not args else self._eager_forward(*args, **kwargs)

        with forward_replaced(self.lm, route), deferred_stop_checks(self.use_cuda_graphs):
            yield {keyword: self.cache}


def graphed_decoder_for(lm: Any) -> GraphedDecoder:
    """The LM's graphed decoder (the LM on CUDA), made on first use and kept on the LM: its graphs
    outlive a batch."""
    decoder = getattr(lm, "_altcap_graphed_decoder", None)
    if decoder is None:
        decoder = GraphedDecoder(lm)
        lm._altcap_graphed_decoder = decoder
    return decoder


def release_graphed_decoder(lm: Any) -> None:
    """Drop the LM's graphs, cache buffers and graph memory pool (e.g. before other GPU work)."""
    if lm.__dict__.pop("_altcap_graphed_decoder", None) is not None and torch.cuda.is_available():
        gc.collect()  # each step's replay closure refers back to its decoder: a cycle
        torch.cuda.empty_cache()
