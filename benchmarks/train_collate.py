"""`train_throughput.py --collate-only`: the training input pipeline alone, with and without pixels."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from altcap.models.loading import ModelConfig, load_model
from altcap.provenance import package_versions
from altcap.train.data import Example, make_collate

RESULTS_DIR = Path(__file__).parent / "results"


def measure_collate(args: argparse.Namespace, examples: list[Example]) -> dict[str, dict[str, float]]:
    """Milliseconds per batch of `altcap train`'s collate, with pixels (cache off) and text-only
    (cache on: images never decoded), on the same first `batch_size` examples; warm-up excluded."""
    _, processor, family = load_model(ModelConfig(model_id=args.model_id, family=args.family, device="cpu"))
    batch = [examples[i % len(examples)] for i in range(args.batch_size)]
    results: dict[str, dict[str, float]] = {}
    for name, with_pixels in (("collate_with_pixels", True), ("collate_text_only", False)):
        collate = make_collate(family, processor, max_caption_tokens=64, with_pixels=with_pixels)
        collate(batch)
        times_ms = []
        for _ in range(args.steps):
            start = time.perf_counter()
            collate(batch)
            times_ms.append((time.perf_counter() - start) * 1000)
        times_ms.sort()
        results[name] = {"min_ms": times_ms[0], "median_ms": times_ms[len(times_ms) // 2]}
    return results


def write_collate_report(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> Path:
    """Print and save the collate timings as JSON; returns its path."""
    speedup = results["collate_with_pixels"]["median_ms"] / results["collate_text_only"]["median_ms"]
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": "cpu",
        "model_id": args.model_id,
        "settings": {k: str(v) for k, v in vars(args).items() if k not in {"out"}},
        "results": results,
        "text_only_speedup": speedup,
        "versions": package_versions(),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = args.out or RESULTS_DIR / f"train_collate-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    for name, figures in results.items():
        print(f"{name:22s} median {figures['median_ms']:9.1f} ms  min {figures['min_ms']:9.1f} ms / batch")
    print(f"text-only collate is {speedup:.1f}x faster")
    return out
