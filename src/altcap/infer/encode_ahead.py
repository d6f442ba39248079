"""Encode the next batch while this one decodes (families with a split `generate`: BLIP-2, InstructBLIP).

Why: in BLIP-2 Flan-T5-XL captioning, ViT-g, the Q-Former and the T5 encoder are about 40 % of a
batch's GPU kernel time, and decoding (one token per caption per step, on ~2,000 small kernels a
step) leaves parts of the GPU idle. Run on a second CUDA stream, the next batch's images-to-encoder
half fills those gaps instead of waiting its turn. It runs in a second host thread too, because
transformers' preparation synchronises with the GPU now and then, and the decoding thread must not
wait for that. The kernels and their inputs are those of plain `generate`, so the ids are too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from altcap.infer.batches import concat_inputs
from altcap.models.graphed_decoding import CAPTURE_LOCK
from altcap.models.text_inputs import move_to_device


@dataclass
class EncodedBatch:
    """One batch with its encoded half, and the event marking when its GPU work is done."""

    batch: Any
    encoded: dict[str, Any]
    ready: torch.cuda.Event | None


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in nested dicts (transformers' ModelOutput is one), lists and tuples."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from tensors_in(item)


class _RunAtOnce:
    """A stand-in executor running each job when submitted: the order of the pipeline, one thread."""

    def submit(self, job: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(job(*args))
        except BaseException as error:  # handed to the caller, as a pool would
            future.set_exception(error)
        return future


def iter_encoded_batches(
    encode: Callable[[list[dict[str, Any]]], dict[str, Any]],
    prepared: Iterator[tuple[Any, list[dict[str, Any]]]],
    device: torch.device,
    threaded: bool | None = None,
) -> Iterator[EncodedBatch]:
    """(batch, encoded) in order, the next batch's encoding already under way while the caller
    decodes the one it was handed.

    Args:
        encode: a batch's CPU input chunks -> its encoded half on `device`.
        prepared: (batch, CPU input chunks) pairs, as `iter_prepared_batches` yields them.
        device: where `encode` puts its work (on CUDA: on a second stream, made here).
        threaded: encode in a second thread; None = on CUDA only (on a CPU both halves would share
            the same cores).

    Yields:
        EncodedBatch; on CUDA the caller's current stream already waits for its encoding.
    """
    on_cuda = device.type == "cuda"
    threaded = on_cuda if threaded is None else threaded
    consumer = torch.cuda.current_stream(device) if on_cuda else None
    # Default priority, the lowest: give the caller's stream a higher one, and its kernels go first
    # whenever both streams have work ready.
    side = torch.cuda.Stream(device) if on_cuda else None

    def run(batch: Any, parts: list[dict[str, Any]]) -> EncodedBatch:
        # The lock: a CUDA graph capture of the decoder (`generation.cuda_graphs`) in the decoding
        # thread fails if this thread makes CUDA calls meanwhile.
        with (
            CAPTURE_LOCK,
            torch.inference_mode(),
            torch.cuda.stream(side) if on_cuda else contextlib.nullcontext(),
        ):
            encoded = encode(parts)
            ready = None
            if on_cuda:
                # Made on the side stream, read on the consumer's: the allocator must not hand
                # these blocks out again until the consumer is done with them.
                for tensor in tensors_in(encoded):
                    tensor.record_stream(consumer)
                ready = torch.cuda.Event()
                ready.record(side)
        return EncodedBatch(batch, encoded, ready)

    def encode_next(item: tuple[Any, list[dict[str, Any]]] | None = None) -> EncodedBatch | None:
        # Later batches are pulled here too: waiting for one's preparation must not hold up decoding.
        item = item or next(prepared, None)
        return None if item is None else run(*item)

    # The first batch is pulled by the caller's thread: that starts the loader's worker processes,
    # and forking from a second thread while the first runs risks a child inheriting held locks.
    first = next(prepared, None)
    with ThreadPoolExecutor(max_workers=1) if threaded else contextlib.nullcontext(_RunAtOnce()) as pool:
        pending = pool.submit(encode_next, first)
        while (current := pending.result()) is not None:
            pending = pool.submit(encode_next)
            yield _handed_over(current, consumer)


def _handed_over(encoded: EncodedBatch, consumer: Any) -> EncodedBatch:
    if encoded.ready is not None:
        consumer.wait_event(encoded.ready)
    return encoded


def iter_captioned_batches(
    model: Any, processor: Any, family: Any, prepared: Iterator, generation: dict[str, Any]
) -> Iterator[tuple[list[Any], list[str]]]:
    """(batch, captions) for each prepared batch; where the family splits `generate` in two, the
    next batch's images-to-encoder half runs while this one decodes (`iter_encoded_batches`)."""

    def to_device(parts: list[dict]) -> dict:
        # Chunks are joined on the device: one copy fewer of the batch through host memory.
        return concat_inputs([move_to_device(part, model.device, model.dtype) for part in parts])

    if family.encode_for_generation is None:
        for batch, parts in prepared:
            with torch.inference_mode():
                captions = family.generate(model, processor, to_device(parts), generation)
            yield batch, captions
        return

    def encode(parts: list[dict]) -> dict:
        return family.encode_for_generation(model, processor, to_device(parts), generation)

    for done in iter_encoded_batches(encode, prepared, torch.device(model.device)):
        with torch.inference_mode():
            captions = family.generate_from_encoded(model, processor, done.encoded, generation)
        yield done.batch, captions


@contextlib.contextmanager
def decoding_stream(device: Any) -> Iterator[None]:
    """On CUDA, a high-priority stream for the caller's work: decoding, the critical path, gets
    the GPU first whenever the next batch's encoding (on a default-priority stream) also has work."""
    if torch.device(device).type != "cuda":
        yield
        return
    with torch.cuda.stream(torch.cuda.Stream(device, priority=-1)):
        yield
