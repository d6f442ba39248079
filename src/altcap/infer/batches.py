"""Batches for `altcap caption`: formed, padded for fixed-shape decoding, and prepared (images
decoded, inputs built) ahead of the GPU, in a thread or in worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

from altcap.data.context import apply_context
from altcap.data.images import load_image_rgb
from altcap.data.prepared_batches import iter_prepared


# Defined here, not in caption.py, so batching (which caption.py imports) needs nothing from above it.
@dataclass(frozen=True)
class CaptionItem:
    """One image to caption: its join key, where it is, its own prompt (None = default) and where
    it appears (the manifest's `metadata.context`; None = unknown)."""

    key: str
    path: Path
    prompt: str | None = None
    context: str | None = None


def put_context_in_prompts(
    items: list[CaptionItem], default_prompt: str | None, template: str, default_instruction: str
) -> list[CaptionItem]:
    """Items whose context the template has put into their prompt (items without one unchanged).

    Args:
        items: the images to caption.
        default_prompt: the config's prompt (None = the family's default instruction).
        template: the context template (`context_template`).
        default_instruction: the family's default instruction, used where no prompt is given.

    Returns:
        The items, those with a context carrying their full prompt.
    """
    out = []
    for item in items:
        if item.context is not None:
            instruction = item.prompt or default_prompt or default_instruction
            item = replace(item, prompt=apply_context(instruction, item.context, template))
        out.append(item)
    return out


def iter_batches(items: list[CaptionItem], batch_size: int) -> Iterator[list[CaptionItem]]:
    """Consecutive batches of at most `batch_size`, never mixing prompts (some models cannot pad them)."""
    batch: list[CaptionItem] = []
    for item in items:
        if batch and (len(batch) == batch_size or item.prompt != batch[0].prompt):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _prepare_batch(
    family: Any,
    processor: Any,
    batch: list[CaptionItem],
    default_prompt: str | None,
    float_dtype: Any = None,
) -> dict:
    # No decode limit here: run_caption screened every image against cfg.max_decoded_pixels.
    images = [load_image_rgb(item.path, max_decoded_pixels=None) for item in batch]
    prompts = [item.prompt if item.prompt is not None else default_prompt for item in batch]
    inputs = family.build_inputs(processor, images, prompts)
    if float_dtype is None:
        return inputs
    from altcap.models.text_inputs import move_to_device

    # Pixels leave the processor in float32 and the model casts them to its dtype on arrival: cast
    # them here, in the worker, and half as many bytes go through shared memory, page-locking and
    # the copy to the GPU (Qwen2.5-VL: 1.2 GB of float32 per 256 images), with the same values.
    return move_to_device(inputs, "cpu", float_dtype)


def iter_prepared_batches(
    family: Any,
    processor: Any,
    batches: list[list[CaptionItem]],
    prompt: str | None,
    prefetch: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
    float_dtype: Any = None,
) -> Iterator[tuple[list[CaptionItem], dict]]:
    """(batch, CPU inputs) pairs, prepared ahead while the caller generates the current batch.

    Args:
        family, processor: from `load_model`.
        batches: batches of items, in order.
        prompt: the default prompt.
        prefetch: False prepares each batch only when asked (a diagnostic baseline).
        num_workers: >0 prepares batches in that many processes, else in one background thread.
        pin_memory: page-lock the inputs (CUDA copies from pinned memory run faster).
        float_dtype: the model's dtype: floating inputs (pixels) are cast to it as they are
            prepared (None: left as the processor made them).

    Returns:
        An iterator over (batch, parts), in the order of `batches`: the batch's CPU inputs in one or
        more consecutive chunks (`concat_inputs` joins them, best after moving them to the GPU).
    """
    prepare = partial(_prepare_batch, family, processor, default_prompt=prompt, float_dtype=float_dtype)
    if not prefetch:
        for batch in batches:
            yield batch, [prepare(batch)]
    elif num_workers > 0:
        yield from _iter_worker_batches(prepare, family, batches, num_workers, pin_memory)
    else:
        yield from _iter_thread_batches(prepare, batches)


def _iter_thread_batches(
    prepare: Callable[[list[CaptionItem]], dict], batches: list[list[CaptionItem]]
) -> Iterator[tuple[list[CaptionItem], dict]]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(prepare, batches[0]) if batches else None
        for index, batch in enumerate(batches):
            inputs = pending.result()
            if index + 1 < len(batches):
                pending = pool.submit(prepare, batches[index + 1])
            yield batch, [inputs]


def _iter_worker_batches(
    prepare: Callable[[list[CaptionItem]], dict],
    family: Any,
    batches: list[list[CaptionItem]],
    num_workers: int,
    pin_memory: bool,
) -> Iterator[tuple[list[CaptionItem], dict]]:
    # Processes, not threads: the image processor's numpy code holds the GIL, and a thread running it
    # slows the Python-heavy generate loop; DataLoader hands tensors back through shared memory.
    # Each batch is split into one chunk per worker, so it is ready in 1/num_workers of the time
    # one process needs: the first batch, which no prefetching can hide, most of all. Not where
    # image sizes shape the inputs: chunks would pad differently, and the batch be prepared twice.
    # One chunk in all (e.g. `altcap caption` on one image) is prepared here, with no worker.
    parts_per_batch = 1 if family.inputs_shaped_by_image_size else num_workers
    chunked = [split_evenly(batch, parts_per_batch) for batch in batches]
    prepared = iter_prepared(
        [chunk for chunks in chunked for chunk in chunks],
        prepare,
        num_workers,
        pin_memory,
        # No generator: the worker seed is drawn from the global torch RNG, as it always was, so
        # seeded sampling draws the same numbers and writes the same captions.
    )
    for batch, chunks in zip(batches, chunked, strict=True):
        parts = [next(prepared) for _ in chunks]
        # Chunks padded to different lengths (per-image prompts, LLaVA tiles) cannot be stacked.
        yield batch, parts if joinable(parts) else [prepare(batch)]


def split_evenly(batch: list[CaptionItem], parts: int, min_size: int = 8) -> list[list[CaptionItem]]:
    """`batch` in at most `parts` consecutive chunks of near-equal size, none under `min_size` items
    (smaller chunks cost more in process hand-offs than they save)."""
    count = max(1, min(parts, len(batch) // min_size))
    size, extra = divmod(len(batch), count)
    bounds = [index * size + min(index, extra) for index in range(count + 1)]
    return [batch[start:end] for start, end in pairwise(bounds)]


def joinable(parts: list[dict]) -> bool:
    """Whether chunks' inputs can be stacked: same keys, same non-tensor values, and tensors that
    differ only in their batch dimension."""
    import torch

    first = parts[0]
    for part in parts[1:]:
        if part.keys() != first.keys():
            return False
        for key, value in part.items():
            head = first[key]
            if isinstance(head, torch.Tensor) != isinstance(value, torch.Tensor):
                return False
            if isinstance(value, torch.Tensor):
                if value.shape[1:] != head.shape[1:] or value.dtype != head.dtype:
                    return False
            elif value != head:
                return False
    return True


def concat_inputs(parts: list[dict]) -> dict:
    """Chunks' inputs joined along the batch dimension (`joinable` must hold)."""
    import torch

    if len(parts) == 1:
        return parts[0]
    return {
        key: torch.cat([part[key] for part in parts]) if isinstance(value, torch.Tensor) else value
        for key, value in parts[0].items()
    }


def pad_batches(batches: list[list[CaptionItem]], batch_size: int) -> list[list[CaptionItem]]:
    """Fill short batches up to `batch_size` with copies of their last item.

    A static KV cache, a compiled decoder step and CUDA graphs are built for one batch shape; a
    short last batch would cost a recompile or recapture to save a few rows of work.
    """
    return [batch + [batch[-1]] * (batch_size - len(batch)) for batch in batches]
