"""Do the next batch's encoding kernels really run beside this batch's decoding? (issue #13)

`altcap caption` encodes batch k+1 (vision tower, Q-Former, T5 encoder) on a second CUDA stream
while batch k decodes (`infer/encode_ahead.py`). If the GPU ran both at once, a batch would cost
about its decoding alone; if it found no room, the sum. This profiles `caption_items` over a few
batches with and without the overlap and reads, from the kernel timeline, how long each stream
was busy, how long any was (their union), and how long both were at once.

    PYTHONPATH=src python benchmarks/caption_overlap_probe.py --random-arch blip2-flan-t5-xl \\
        --batch-size 512 --batches 3 --out-dir $OUT                                      # GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's helpers
from caption_throughput import (
    ALTCAP_SETTINGS,
    RESULTS_DIR,
    describe_hardware,
    load_benchmark_model,
    pick_images,
    synchronize,
)
from random_archs import ARCHS

from altcap.infer.caption import CaptionItem, caption_items
from altcap.infer.config import CaptionConfig, GenerationConfig
from altcap.provenance import package_versions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true", help="tiny random BLIP-2 (CPU smoke run)")
    source.add_argument("--random-arch", choices=ARCHS, help="a real architecture, random weights")
    parser.add_argument("--model-id", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tiny-family", default="blip2")
    parser.add_argument("--tiny-variant", default="t5")
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--batches", type=int, default=3, help="profiled batches per variant")
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--setting", default="graphs", choices=[s for s in ALTCAP_SETTINGS if "-" not in s])
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--num-workers", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping cover of `intervals` ((start, end) pairs)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def covered(intervals: list[tuple[int, int]]) -> int:
    return sum(end - start for start, end in merged(intervals))


def timeline_summary(kernels: list[tuple[int, int, int]]) -> dict[str, Any]:
    """Busy times from (stream, start_ns, end_ns) kernel records: per stream, any stream (union),
    and two or more streams at once (sum of per-stream busy time minus the union)."""
    by_stream: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for stream, start, end in kernels:
        by_stream[stream].append((start, end))
    per_stream = {stream: covered(spans) for stream, spans in by_stream.items()}
    union = covered([(start, end) for _, start, end in kernels])
    return {
        "streams": {
            str(stream): {"busy_s": ns / 1e9, "kernels": len(by_stream[stream])}
            for stream, ns in per_stream.items()
        },
        "any_stream_busy_s": union / 1e9,
        "several_streams_busy_s": (sum(per_stream.values()) - union) / 1e9,
    }


def profile_variant(loaded: tuple, items: list[CaptionItem], cfg: CaptionConfig, serial: bool) -> dict:
    """Warm up on one batch (graph captures), then profile `caption_items` over all `items`."""
    from torch.profiler import ProfilerActivity, profile

    _, model, processor, family = loaded
    family = replace(family, encode_for_generation=None) if serial else family
    warm = cfg.model_copy(update={"out": cfg.out.with_suffix(".warm.jsonl")})
    caption_items(model, processor, family, items[: cfg.batch_size], warm, progress=False)
    synchronize(model.device)
    # Kernels only on CUDA: host-side op events would slow the profiled run for nothing read here.
    activities = [ProfilerActivity.CUDA] if torch.cuda.is_available() else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        caption_items(model, processor, family, items, cfg, progress=False)
        synchronize(model.device)
        wall = time.perf_counter() - began
    kernels = [
        (event.device_resource_id(), event.start_ns(), event.end_ns())
        for event in prof.profiler.kineto_results.events()
        if event.device_type() == torch.autograd.DeviceType.CUDA and not event.name().startswith("Mem")
    ]
    return {"serial": serial, "wall_s": wall, "images": len(items), **timeline_summary(kernels)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        loaded = load_benchmark_model(args, scratch)
        paths = pick_images(args.images, args.batch_size * args.batches, scratch)
        items = [CaptionItem(path.name, path) for path in paths]
        n = args.max_new_tokens
        generation = GenerationConfig(
            num_beams=args.beams, max_new_tokens=n, min_new_tokens=n, **ALTCAP_SETTINGS[args.setting]
        )
        variants = []
        for serial in (True, False):
            cfg = CaptionConfig(
                model=loaded[0],
                images=scratch,
                out=scratch / f"captions-serial{serial}.jsonl",
                generation=generation,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
            )
            variants.append(profile_variant(loaded, items, cfg, serial))
            print(json.dumps(variants[-1]), flush=True)
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.random_arch or f"tiny-{args.tiny_family}-{args.tiny_variant}",
        "hardware": describe_hardware(loaded[1].device),
        "versions": package_versions(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "variants": variants,
        "overlapped_over_serial_wall": variants[1]["wall_s"] / variants[0]["wall_s"],
    }


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    report = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = args.out_dir / f"caption_overlap-{report['model']}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"overlapped / serial wall time: {report['overlapped_over_serial_wall']:.3f}; wrote {out}")
    return out


if __name__ == "__main__":
    main()
