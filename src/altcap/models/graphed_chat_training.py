"""A chat VLM's language model trained with its forward and backward replayed as CUDA graphs.

Why by hand: SmolVLM2-2.2B's LoRA steps (batch 16, ~130 tokens a row) launch ~5,400 kernels and
keep an H100 busy ~23 % of the time: ~60 ms of kernels in a ~265 ms step (session 17's profile,
docs/benchmarks.md), and TRL's steps take as long. torch.compile's reduce-overhead mode graphs too,
but compiles for minutes (150-190 s for BLIP-2's blocks) where such a run lasts seconds, and fuses
kernels into other rounding. `torch.cuda.make_graphed_callables` records the very kernels eager
mode launches, forward and backward, and replays each pass with one launch.

How: while the model trains, the language model's call (`model.get_decoder()`) is replaced. Its
inputs (the merged embeddings, the 2-D padding mask, the positions) are padded on the right to a
length rounded up to `LENGTH_STEP`, so batches of nearby lengths share one graph; padded positions
come after every real one, so causal attention keeps them out of the real positions' outputs, and
their outputs are cut off again. A shape runs eagerly the first time it is seen (an epoch's odd last
batch never pays for a capture) and is captured the second time. What surrounds that call (image
features merged into the embeddings, the LM head over the caption positions, the loss) stays eager:
it reads tensor values on the host (boolean masks), which a graph cannot. A graph's activations are
kept in fixed buffers, so each pass's backward must run before the next pass of its shape, as in
every altcap objective (forward, backward, then the next batch).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from altcap.models.graph_steps import own_forward, replace_forward, tensor_leaves

logger = logging.getLogger(__name__)
LENGTH_STEP = 32  # padded lengths are multiples of this: nearby lengths share a graph
MAX_GRAPHS = 4  # shapes captured at most; further shapes run eagerly (each graph keeps its buffers)
WARMUP_ITERS = 1  # make_graphed_callables' own eager passes, on a side stream, before it captures
# Attention kernels a recorded pass may use: those session 17's captures ran with on an H100. SDPA
# otherwise picks cuDNN's for SmolVLM2's language model (its profile), whose capture is untested.
GRAPHED_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
# Arguments some VLMs hand their language model although it reads none of them
# (LLaVA-OneVision passes `logits_to_keep` down; the LM head outside applies it).
UNREAD_ARGUMENTS = ("logits_to_keep", "use_cache")


@dataclass
class DecoderCall:
    """A language-model call a graph can replay: its tensors and its other (fixed) arguments."""

    embeds: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor | None
    fixed: dict[str, Any]


def graphable_call(kwargs: dict[str, Any]) -> DecoderCall | str:
    """The call's graph inputs, or why a graph cannot replay it (it then runs eagerly)."""
    rest = dict(kwargs)
    embeds = rest.pop("inputs_embeds", None)
    if embeds is None or rest.pop("input_ids", None) is not None:
        return "the language model is called with token ids, not embeddings"
    mask = rest.pop("attention_mask", None)
    if mask is None:
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    elif not isinstance(mask, torch.Tensor) or mask.ndim != 2:
        return "its attention mask is not a 2-D padding mask (a 4-D or per-layer-type mask)"
    positions = rest.pop("position_ids", None)
    for name in ("cache", "past_key_values"):  # training makes an empty one at most (SmolVLM)
        cache = rest.pop(name, None)
        if cache is not None and cache.get_seq_length() > 0:
            return "it continues from a filled cache"
    for name in UNREAD_ARGUMENTS:
        rest.pop(name, None)
    if tensors := sorted({str(path[0]) for path, _ in tensor_leaves(rest)}):
        return f"it takes further tensors ({', '.join(tensors)})"
    return DecoderCall(embeds, mask.long(), positions, rest)


def padded_length(length: int, step: int = LENGTH_STEP) -> int:
    return -(-length // step) * step


def pad_call(call: DecoderCall, length: int) -> tuple[torch.Tensor, ...]:
    """The call's tensors padded on the right to `length` positions: zero embeddings, mask 0,
    position 0 (positions may carry leading rope axes: [axes, batch, length])."""
    extra = length - call.embeds.shape[1]
    padded = (F.pad(call.embeds, (0, 0, 0, extra)), F.pad(call.mask, (0, extra)))
    return padded if call.positions is None else (*padded, F.pad(call.positions, (0, extra)))


class LanguageModelPass(torch.nn.Module):
    """The language model's forward on fixed-shape tensors, as `make_graphed_callables` takes it
    (positional tensors in, the last hidden state out); holds the decoder, so its parameters."""

    def __init__(self, decoder: torch.nn.Module, fixed: dict[str, Any]):
        super().__init__()
        self.decoder = decoder
        self.fixed = fixed

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, *positions: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(GRAPHED_ATTENTION):
            outputs = own_forward(
                self.decoder,
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions[0] if positions else None,
                use_cache=False,
                **self.fixed,
            )
        return outputs.last_hidden_state


@contextlib.contextmanager
def uncached_autocast() -> Iterator[None]:
    """The surrounding CUDA autocast without its weight-cast cache, which `make_graphed_callables`
    refuses (a cast cached outside the graph would be read from a stale address inside it)."""
    if not torch.is_autocast_enabled("cuda"):
        yield
        return
    with torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False):
        yield


class GraphedTrainingDecoder:
    """Replays a chat VLM's language-model passes in training as CUDA graphs, one per input shape.

    Args:
        decoder: the language model inside the VLM (`model.get_decoder()`), whose call is replaced.
        use_cuda_graphs: capture real graphs (needs CUDA); False runs the same padded passes
            eagerly, to test everything but the capture on a CPU.
    """

    def __init__(self, decoder: torch.nn.Module, use_cuda_graphs: bool = True):
        self.decoder = decoder
        self.use_cuda_graphs = use_cuda_graphs
        self.graphs: dict[tuple, torch.nn.Module] = {}
        self.seen: set[tuple] = set()
        self.pool: Any = None
        self.failed: str | None = None
        self.unsupported: set[str] = set()
        self.eager_passes = 0
        self.graphed_passes = 0

    def describe(self) -> dict[str, Any]:
        """What the graphs did, for provenance.json: passes replayed, passes run eagerly and why."""
        return {
            "graphed_passes": self.graphed_passes,
            "eager_passes": self.eager_passes,
            "shapes_captured": len(self.graphs),
            "not_graphed_because": sorted(self.unsupported) + ([self.failed] if self.failed else []),
        }

    def _eager(self, *args: Any, **kwargs: Any) -> Any:
        return own_forward(self.decoder, *args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Stands in for the decoder's forward: training passes with a gradient replay a graph
        once their shape was seen before; everything else runs eagerly."""
        if args or not (self.decoder.training and torch.is_grad_enabled()):
            return self._eager(*args, **kwargs)  # not a training pass
        call = graphable_call(kwargs)
        if isinstance(call, str):
            if call not in self.unsupported:  # said once a run
                self.unsupported.add(call)
                logger.info("training without CUDA graphs: %s", call)
            return self._eager(**kwargs)
        if self.failed:
            self.eager_passes += 1
            return self._eager(**kwargs)
        length = call.embeds.shape[1]
        target = padded_length(length)
        key = self._key(call, target)
        graphed = self.graphs.get(key)
        if graphed is None and key in self.seen and len(self.graphs) < MAX_GRAPHS:
            graphed = self._capture(key, call, target)
        if graphed is None:
            self.seen.add(key)
            self.eager_passes += 1
            return self._eager(**kwargs)
        self.graphed_passes += 1
        from transformers.modeling_outputs import BaseModelOutputWithPast

        hidden = graphed(*pad_call(call, target))
        return BaseModelOutputWithPast(last_hidden_state=hidden[:, :length])

    def _graphed(self, module: torch.nn.Module, samples: tuple) -> torch.nn.Module | None:
        """`module` recorded as forward and backward graphs, or None (said once) where the capture
        fails: an op it refuses. The pass then runs eagerly for the rest of the run; a second try
        cannot help, as the allocator stays bound to the failed capture's memory pool."""
        # Casts cached by an autocast held open across passes keep the LoRA weights' gradient
        # accumulators alive, bound to the stream that made them, and a captured backward must not
        # wait on another stream: they are dropped (one re-cast). Not enough on its own: in session
        # 18's GPU run the tiny SmolVLM's capture still failed under one autocast held across its
        # passes, while `altcap train`'s captures work: its `fit` opens an autocast per micro-batch.
        torch.clear_autocast_cache()
        # The allocator caches freed blocks per stream: without emptying, the eager passes' blocks
        # (main stream), the warm-up's (capture stream) and the graph's pool are all held at once;
        # session 17's Qwen2.5-VL run reserved 83 GB for 33 GB allocated. A graph's own pool stays.
        torch.cuda.empty_cache()
        try:
            warm_up_on(capture_stream(), module, samples)
            with uncached_autocast():
                return torch.cuda.make_graphed_callables(
                    module, samples, num_warmup_iters=WARMUP_ITERS, pool=self.pool
                )
        except Exception as err:
            self.failed = f"{type(err).__name__}: {err}".strip()
            logger.warning("training without CUDA graphs: the capture failed (%s)", self.failed)
            return None
        finally:
            torch.cuda.empty_cache()

    @staticmethod
    def _key(call: DecoderCall, length: int) -> tuple:
        positions = (
            None if call.positions is None else (tuple(call.positions.shape[:-1]), call.positions.dtype)
        )
        fixed = tuple(sorted((name, repr(value)) for name, value in call.fixed.items()))
        autocast = torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda")
        embeds = call.embeds
        return (embeds.shape[0], length, embeds.dtype, embeds.requires_grad, positions, fixed, autocast)

    def _capture(self, key: tuple, call: DecoderCall, length: int) -> torch.nn.Module | None:
        module = LanguageModelPass(self.decoder, call.fixed)
        if self.use_cuda_graphs:
            samples = tuple(
                t.detach().clone().requires_grad_(t.requires_grad) for t in pad_call(call, length)
            )
            self.pool = self.pool or torch.cuda.graph_pool_handle()  # graphs share one memory pool
            module = self._graphed(module, samples)
            if module is None:
                return None
        self.graphs[key] = module
        batch = call.embeds.shape[0]
        logger.info(
            "training graph %d of at most %d: batch %d x %d positions",
            len(self.graphs),
            MAX_GRAPHS,
            batch,
            length,
        )
        return module


def capture_stream() -> torch.cuda.Stream:
    """The stream `torch.cuda.graph` records on when given none, as in `make_graphed_callables`
    (made on the first graph object)."""
    torch.cuda.graph(torch.cuda.CUDAGraph())  # constructing it records nothing
    return torch.cuda.graph.default_capture_stream


def warm_up_on(stream: torch.cuda.Stream, module: torch.nn.Module, samples: tuple) -> None:
    """One forward and backward of `module` on `stream`, whose per-stream state (cuBLAS
    workspaces) is then set up before a capture on it rather than during one."""
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), uncached_autocast():
        hidden = module(*samples)
        trained = [p for p in module.parameters() if p.requires_grad]
        torch.autograd.grad(hidden, trained, torch.ones_like(hidden), allow_unused=True)
    torch.cuda.current_stream().wait_stream(stream)


def enable_graphed_training(model: Any, use_cuda_graphs: bool = True) -> GraphedTrainingDecoder:
    """Route `model`'s language-model passes in training through CUDA graphs; returns the router
    (its counts say how many passes replayed a graph).

    Args:
        model: the chat VLM, PEFT-wrapped with its LoRA layers already in place.
        use_cuda_graphs: False = the same padded passes run eagerly (CPU tests).

    Raises:
        ValueError: graphs asked for on a model that is not on a CUDA device.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    # The language model's own device: after a feature-cache fill the vision tower is on "meta".
    device = next(decoder.parameters()).device
    if use_cuda_graphs and device.type != "cuda":
        raise ValueError(
            f"cuda_graphs=true needs the model on a CUDA device, not {device}; set cuda_graphs=false"
        )
    router = GraphedTrainingDecoder(decoder, use_cuda_graphs)
    replace_forward(decoder, router.forward)  # for the run: training never puts it back
    return router
