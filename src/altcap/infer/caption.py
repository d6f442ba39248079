"""`run_caption`: caption a manifest split or an image folder, resumably, in throughput-friendly batches.

Resumable by construction: each finished batch is appended to the output and fsynced before the
next starts, and a rerun skips every image already in the file. A file written with other
model/adapter/generation settings is refused rather than silently mixed. Which images a run covers
is `altcap.infer.items`; what an existing file already holds, and its provenance,
`altcap.infer.captions_resume`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from altcap.infer.batches import (
    CaptionItem,
    concat_inputs,
    iter_batches,
    iter_prepared_batches,
    pad_batches,
    put_context_in_prompts,
)
from altcap.infer.captions_file import CaptionRecord, append_captions
from altcap.infer.captions_resume import drop_torn_last_line, find_done_images, write_provenance
from altcap.infer.config import CaptionConfig
from altcap.infer.distributed import merge_shards, process_state, shard_path
from altcap.infer.items import CaptionError, collect_items, order_for_throughput, screen_items
from altcap.infer.trained_prompt import adopt_trained_prompt


@dataclass
class CaptionSummary:
    """What a caption run did."""

    out: Path
    total_images: int
    skipped_images: int
    written_images: int
    seconds: float
    unreadable_images: int = 0


def caption_items(
    model: Any,
    processor: Any,
    family: Any,
    items: list[CaptionItem],
    cfg: CaptionConfig,
    progress: bool = True,
    prefetch: bool = True,
) -> int:
    """Generate and append captions for `items` (already ordered); the core loop, also benchmarked.

    Args:
        model, processor, family: from `load_model`.
        items: images to caption.
        cfg: settings (generation, batch size, workers, prompt, out).
        progress: show the stage's progress bar (`cli_output.progress_bar`; none under -q).
        prefetch: prepare the next batches during generation (cfg.num_workers says how).

    Returns:
        Number of captions written.
    """
    import torch

    from altcap.cli_output import progress_bar

    batches = list(iter_batches(items, cfg.batch_size))
    sizes = [len(batch) for batch in batches]
    if cfg.generation.cache_implementation == "static" or cfg.generation.cuda_graphs:
        batches = pad_batches(batches, cfg.batch_size)
    settings, generate_kwargs = cfg.record_settings(), cfg.generation.generate_kwargs()
    pin_memory = torch.device(model.device).type == "cuda"
    prepared = iter_prepared_batches(
        family, processor, batches, cfg.prompt, prefetch, cfg.num_workers, pin_memory, model.dtype
    )
    written = 0
    pending = None
    # The writer thread appends (and fsyncs) a batch while the GPU works on the next one; at most
    # one batch is in flight, and a write error surfaces at the next batch.
    with (
        ThreadPoolExecutor(max_workers=1) as writer,
        progress_bar(len(items), "captioning", unit="img", shown=progress) as bar,
    ):
        for (batch, parts), size in zip(prepared, sizes, strict=True):
            captions = _generate_batch(model, processor, family, parts, generate_kwargs)
            records = _records(batch[:size], captions[:size], cfg, settings)
            if pending is not None:
                pending.result()
            pending = writer.submit(append_captions, cfg.out, records)
            written += len(records)
            bar.update(len(records))
        if pending is not None:
            pending.result()
    return written


def _generate_batch(
    model: Any, processor: Any, family: Any, parts: list[dict], generate_kwargs: dict[str, Any]
) -> list[str]:
    import torch

    from altcap.models.text_inputs import move_to_device

    # Chunks are joined on the device: one copy fewer of the batch through host memory.
    inputs = concat_inputs([move_to_device(part, model.device, model.dtype) for part in parts])
    with torch.inference_mode():
        return family.generate(model, processor, inputs, generate_kwargs)


def _records(
    batch: list[CaptionItem], captions: list[str], cfg: CaptionConfig, settings: dict[str, Any]
) -> list[CaptionRecord]:
    return [
        CaptionRecord(
            image=item.key,
            caption=caption,
            model_id=cfg.model.model_id,
            adapter=cfg.model.adapter,
            generation=settings,
        )
        for item, caption in zip(batch, captions, strict=True)
    ]


def run_caption(cfg: CaptionConfig) -> CaptionSummary:
    """Validate inputs, load the model, caption every image not yet in `cfg.out`, record provenance.

    Under several processes (`--gpus N` or any `accelerate launch`), each captions its share of the
    images into its own shard and the main process merges them into `cfg.out` in manifest order
    (`altcap.infer.distributed`).

    Args:
        cfg: the resolved caption config.

    Returns:
        A summary (images total / skipped as already captioned / written, seconds).

    Raises:
        CaptionError, ModelLoadError: bad input, named before any model is loaded.
    """
    from altcap.models.loading import read_model_config, resolve_family
    from altcap.models.registry import DEFAULT_INSTRUCTION

    started, state = time.perf_counter(), process_state()
    cfg = adopt_trained_prompt(cfg)
    items = collect_items(cfg)
    is_main = state is None or state.is_main_process
    if is_main and cfg.out.exists():  # fold a killed run's shards in, so their images count as done
        merge_shards(cfg.out, [item.key for item in items], drop_torn_last_line)
        drop_torn_last_line(cfg.out)
    if state is not None:
        state.wait_for_everyone()
    done = find_done_images(cfg)
    todo, unreadable = screen_items(cfg, [item for item in items if item.key not in done])
    family = resolve_family(cfg.model, read_model_config(cfg.model).model_type)
    check_family_fits(cfg, family)
    if family.follows_instructions:  # a fixed prompt prefix would read a context as caption text
        todo = put_context_in_prompts(todo, cfg.prompt, cfg.context_template, DEFAULT_INSTRUCTION)
    skipped = len(items) - len(todo) - len(unreadable)  # already captioned
    run = {"id": f"{time.time_ns()}", "started_images": len(todo), "skipped_images": skipped}
    run["unreadable_images"] = unreadable
    share_cfg, share = _share_of(cfg, todo, state)
    loaded = _load_checked(share_cfg) if share else None
    if is_main and todo:
        write_provenance(cfg, family.name, {**run, "status": "running"})
    written = caption_items(*loaded, order_for_throughput(share), share_cfg) if loaded else 0
    if state is not None:
        state.wait_for_everyone()
        if is_main:
            written = merge_shards(cfg.out, [item.key for item in items], drop_torn_last_line)
    seconds = time.perf_counter() - started
    if is_main:
        write_provenance(
            cfg, family.name, {**run, "status": "done", "written_images": written, "seconds": seconds}
        )
    return CaptionSummary(cfg.out, len(items), skipped, written, seconds, len(unreadable))


def check_family_fits(cfg: CaptionConfig, family: Any) -> None:
    """Refuse, before loading, settings that need a capability the family lacks."""
    from altcap.models.registry import families_with

    if cfg.generation.cuda_graphs and family.graphed_decoding is None:
        raise CaptionError(
            f"generation.cuda_graphs works for families with graphed decoding "
            f"({', '.join(families_with('graphed_decoding'))}), not {family.name}; "
            "drop generation.cuda_graphs"
        )


def _share_of(
    cfg: CaptionConfig, todo: list[CaptionItem], state: Any | None
) -> tuple[CaptionConfig, list[CaptionItem]]:
    """This process's images and config: all of `todo` alone, else a share written to its own shard."""
    if state is None:
        return cfg, todo
    with state.split_between_processes(todo) as share:
        share = list(share)
    update: dict[str, Any] = {"out": shard_path(cfg.out, state.process_index)}
    if cfg.model.device == "auto":
        update["model"] = cfg.model.model_copy(update={"device": str(state.device)})
    return cfg.model_copy(update=update), share


def _load_checked(cfg: CaptionConfig) -> tuple[Any, Any, Any]:
    """(model, processor, family), refused before any caption is written when graphs cannot run."""
    import torch

    from altcap.models.loading import load_model

    torch.manual_seed(cfg.seed)
    model, processor, family = load_model(cfg.model)
    graphs = family.graphed_decoding if cfg.generation.cuda_graphs else None
    if graphs is not None and (problem := graphs.check(model, processor)):
        raise CaptionError(problem)
    return model, processor, family
