"""Several copies of the model captioning side by side on one device, one process each.

Batched beam search on a GPU is host-bound: on an H100, BLIP-2 Flan-T5-XL's GPU sat idle half of
each step while Python issued the next kernels (docs/benchmarks.md). A second process issuing its
own kernels fills those gaps; threads would not, since the launching is Python holding the GIL.
Each replica loads the model itself, captions every R-th batch and sends its captions to the main
process, the only writer of the output, so resuming and provenance work as with one process.
"""

from __future__ import annotations

import queue as queue_module
import time
import traceback
from dataclasses import dataclass
from typing import Any

from altcap.infer.config import CaptionConfig

_READY, _BATCH, _DONE, _FAILED = "ready", "batch", "done", "failed"


@dataclass
class ReplicaRun:
    """What the replicas did: captions written, seconds from all replicas loaded to the last caption,
    and each replica's peak GPU memory in GiB (None off CUDA)."""

    written: int
    generate_seconds: float
    peak_gpu_gb: list[float | None]


def shard_batches(items: list[Any], batch_size: int, replicas: int) -> list[list[Any]]:
    """Every `replicas`-th batch of `items` (in order) for each replica, flattened back to items, so
    each replica re-forms exactly the batches one process would have run."""
    batches = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    return [[item for batch in batches[r::replicas] for item in batch] for r in range(replicas)]


def _replica_main(cfg: CaptionConfig, items: list[Any], warmup: bool, messages: Any, start: Any) -> None:
    """One replica: load, (optionally) caption its first batch untimed, wait for the start, caption."""
    try:
        import torch

        from altcap.infer.caption import iter_captions
        from altcap.models.loading import load_model

        torch.manual_seed(cfg.seed)
        model, processor, family = load_model(cfg.model)
        if warmup and items:
            for _ in iter_captions(model, processor, family, items[: cfg.batch_size], cfg):
                pass
        messages.put((_READY, None))
        start.wait()
        for batch, captions in iter_captions(model, processor, family, items, cfg):
            messages.put((_BATCH, ([item.key for item in batch], captions)))
        cuda = torch.device(model.device).type == "cuda"
        messages.put((_DONE, torch.cuda.max_memory_allocated(model.device) / 2**30 if cuda else None))
    except BaseException:  # the main process must learn why, or it would wait forever
        messages.put((_FAILED, traceback.format_exc()))


def caption_with_replicas(
    cfg: CaptionConfig, items: list[Any], write: Any, warmup: bool = False, poll_seconds: float = 5.0
) -> ReplicaRun:
    """Caption `items` with `cfg.replicas` model copies; `write(keys, captions)` records each batch.

    Args:
        cfg: the caption config (its model is loaded once per replica).
        items: CaptionItems, already ordered for throughput.
        write: called in this process for every finished batch, in arrival order.
        warmup: each replica first captions one batch untimed (benchmarks: excludes CUDA start-up).
        poll_seconds: how often a silent wait checks that every replica is still alive.

    Returns:
        Captions written and the seconds from the start signal to the last batch.

    Raises:
        RuntimeError: a replica failed (its traceback is in the message) or died.
    """
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")  # CUDA cannot be used in forked children
    messages, start = context.Queue(), context.Event()
    shards = [shard for shard in shard_batches(items, cfg.batch_size, cfg.replicas) if shard]
    processes = [
        context.Process(target=_replica_main, args=(cfg, shard, warmup, messages, start), daemon=False)
        for shard in shards
    ]
    for process in processes:
        process.start()
    try:
        _wait_for(messages, processes, _READY, len(processes), poll_seconds)
        began = time.perf_counter()
        start.set()
        written, peaks = _collect(messages, processes, write, poll_seconds)
        return ReplicaRun(written, time.perf_counter() - began, peaks)
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()


def _next_message(messages: Any, processes: list[Any], poll_seconds: float) -> tuple[str, Any]:
    while True:
        try:
            kind, payload = messages.get(timeout=poll_seconds)
        except queue_module.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                codes = [p.exitcode for p in processes]
                raise RuntimeError(f"a caption replica died without a message (exit codes {codes})") from None
            continue
        if kind == _FAILED:
            raise RuntimeError(f"a caption replica failed:\n{payload}")
        return kind, payload


def _wait_for(messages: Any, processes: list[Any], kind: str, count: int, poll_seconds: float) -> None:
    for _ in range(count):
        got, _ = _next_message(messages, processes, poll_seconds)
        if got != kind:
            raise RuntimeError(f"caption replica protocol: expected {kind!r}, got {got!r}")


def _collect(messages: Any, processes: list[Any], write: Any, poll_seconds: float) -> tuple[int, list]:
    written, peaks = 0, []
    while len(peaks) < len(processes):
        kind, payload = _next_message(messages, processes, poll_seconds)
        if kind == _DONE:
            peaks.append(payload)
        else:
            keys, captions = payload
            write(keys, captions)
            written += len(captions)
    return written, peaks
