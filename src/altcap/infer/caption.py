"""`run_caption`: caption a manifest split or an image folder, resumably, in throughput-friendly batches.

Resumable by construction: each finished batch is appended to the output and fsynced before the
next starts, and a rerun skips every image already in the file. A file written with other
model/adapter/generation settings is refused rather than silently mixed.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import UnidentifiedImageError

from altcap.data.context import read_context
from altcap.data.image_screen import describe_unreadable, screen_listed_images
from altcap.data.images import read_upright_size
from altcap.data.import_common import IMAGE_SUFFIXES
from altcap.data.manifest import read_manifest, resolve_image
from altcap.infer.batches import (
    CaptionItem,
    concat_inputs,
    iter_batches,
    iter_prepared_batches,
    pad_batches,
    put_context_in_prompts,
)
from altcap.infer.captions_file import CaptionRecord, append_captions, read_captions
from altcap.infer.config import CaptionConfig
from altcap.infer.distributed import merge_shards, process_state, shard_path
from altcap.provenance import build_provenance

logger = logging.getLogger(__name__)


class CaptionError(ValueError):
    """Bad input for `altcap caption`; the message names the file or field and the fix."""


@dataclass
class CaptionSummary:
    """What a caption run did."""

    out: Path
    total_images: int
    skipped_images: int
    written_images: int
    seconds: float
    unreadable_images: int = 0


def collect_items(cfg: CaptionConfig) -> list[CaptionItem]:
    """The images to caption, from the manifest split or the folder; missing files are an error.

    Args:
        cfg: the caption config (exactly one of manifest / images is set).

    Returns:
        Items in source order, truncated to `cfg.limit`.
    """
    if cfg.manifest is not None:
        records = read_manifest(cfg.manifest, cfg.split)
        if not records:
            raise CaptionError(f"{cfg.manifest}: no records with split={cfg.split!r}; check --split")
        items = [
            CaptionItem(r.image, resolve_image(cfg.manifest, r), r.prompt, read_context(r)) for r in records
        ]
    else:
        folder = cfg.images
        if not folder.is_dir():
            raise CaptionError(f"images={str(folder)!r}: folder not found")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise CaptionError(
                f"images={str(folder)!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        items = [CaptionItem(p.relative_to(folder).as_posix(), p) for p in paths]
    items = items[: cfg.limit] if cfg.limit else items
    missing = [str(item.path) for item in items if not item.path.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CaptionError(
            f"{len(missing)} image(s) not found: {shown}; fix the paths or run `altcap data check`"
        )
    return items


def _same_source(given: str | None, stored: str | None) -> bool:
    if given == stored:
        return True
    if given is None or stored is None:
        return False
    # A folder given once relative and once absolute is the same model.
    return Path(given).exists() and Path(given).resolve() == Path(stored).resolve()


def drop_torn_last_line(path: Path) -> int:
    """Cut a half-written last line (a run killed mid-write); returns the bytes removed.

    Complete lines always end in a newline (append_captions writes whole lines), so an unterminated
    tail that is not valid JSON can only be a torn write; everything before it is kept.
    """
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    try:
        json.loads(data[keep:])
    except ValueError:
        with path.open("r+b") as handle:
            handle.truncate(keep)
        warnings.warn(f"{path}: dropped a half-written last line ({len(data) - keep} bytes)", stacklevel=2)
        return len(data) - keep
    with path.open("ab") as handle:  # a complete record missing only its newline: end the line
        handle.write(b"\n")
    return 0


def find_done_images(cfg: CaptionConfig) -> set[str]:
    """Images already in `cfg.out` (empty if it does not exist); refuses a file made with other settings."""
    if not cfg.out.exists():
        return set()
    drop_torn_last_line(cfg.out)
    settings = cfg.record_settings()
    done: set[str] = set()
    for line_no, record in enumerate(read_captions(cfg.out), start=1):
        differences = []
        if not _same_source(cfg.model.model_id, record.model_id):
            differences.append(f"model_id {record.model_id!r} (now {cfg.model.model_id!r})")
        if not _same_source(cfg.model.adapter, record.adapter):
            differences.append(f"adapter {record.adapter!r} (now {cfg.model.adapter!r})")
        differences += [
            f"generation.{key}={record.generation.get(key)!r} (now {settings.get(key)!r})"
            for key in sorted(set(record.generation) | set(settings))
            if record.generation.get(key) != settings.get(key)
        ]
        if differences:
            raise CaptionError(
                f"{cfg.out}: record {line_no} was made with {'; '.join(differences)}; captions from "
                "different settings must not be mixed: pass another --out, or restore the original settings "
                "to resume"
            )
        done.add(record.image)
    return done


def screen_items(cfg: CaptionConfig, items: list[CaptionItem]) -> tuple[list[CaptionItem], list[dict]]:
    """Decode every image once before the model loads (the shared loader); unreadable ones stop the run
    with their files and manifest lines, or with `skip_unreadable_images` are left out and returned.

    Raises:
        CaptionError: naming each unreadable image, unless `cfg.skip_unreadable_images`.
    """
    bad = screen_listed_images([item.path for item in items], cfg.max_decoded_pixels, cfg.manifest)
    if not bad:
        return items, []
    if not cfg.skip_unreadable_images:
        raise CaptionError(describe_unreadable(bad, "--set skip_unreadable_images=true"))
    logger.warning(
        "skip_unreadable_images: left out %d unreadable image(s), listed in %s: %s",
        len(bad), provenance_path(cfg.out).name, "; ".join(image.describe() for image in bad[:3]),
    )
    key_of = {str(item.path): item.key for item in items}  # the join key `altcap evaluate` reports
    dropped = {image.path for image in bad}
    unreadable = [{"image": key_of[image.path], **image.to_dict()} for image in bad]
    return [item for item in items if str(item.path) not in dropped], unreadable


def order_for_throughput(items: list[CaptionItem]) -> list[CaptionItem]:
    """Group same-prompt, same-shape images so a batch needs no prompt padding and few image tiles.

    Only the image header is read (Pillow opens lazily), so this costs far less than decoding; the
    shape is the upright one the loader gives (a sideways-stored phone photo is portrait).
    """

    def sort_key(item: CaptionItem) -> tuple[str, float, str]:
        try:
            width, height = read_upright_size(item.path)
        except (OSError, UnidentifiedImageError) as err:
            raise CaptionError(f"{item.path}: not a readable image ({err}); run `altcap data check`") from err
        return (item.prompt or "", round(width / max(height, 1), 1), item.key)

    return sorted(items, key=sort_key)


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
        family, processor, batches, cfg.prompt, prefetch, cfg.num_workers, pin_memory
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


def provenance_path(out: Path) -> Path:
    """Where the provenance of a captions file lives: `<out>.provenance.json` beside it."""
    return out.with_name(out.name + ".provenance.json")


def write_provenance(cfg: CaptionConfig, family_name: str, run: dict[str, Any]) -> None:
    """Write provenance beside the output; earlier runs that appended to the same file are kept."""
    path = provenance_path(cfg.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    if path.is_file():
        runs = [
            r
            for r in json.loads(path.read_text(encoding="utf-8")).get("runs", [])
            if r.get("id") != run["id"]
        ]
    provenance = build_provenance(
        cfg,
        cfg.model.model_id,
        cfg.manifest,
        adapter=cfg.model.adapter,
        family=family_name,
        generation=cfg.record_settings(),
        images_folder=str(cfg.images) if cfg.images else None,
        runs=[*runs, run],
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    os.replace(tmp, path)


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
    if family.follows_instructions:  # a fixed prefix (BLIP) would read a context as caption text
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
