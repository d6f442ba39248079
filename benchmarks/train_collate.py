"""The training input pipeline alone: `altcap train`'s collate with pixels and text-only (CPU).

  python -m benchmarks.train_collate --tiny --steps 2 --batch-size 4         # CPU smoke run
  python -m benchmarks.train_collate --model-id altcap-mini --images /work/shared/data/flickr8k \\
      --num-images 64 --batch-size 64 --steps 5
  python -m benchmarks.train_collate --model-id SMOLVLM2_FOLDER --max-image-pixels 200704 \
      --images /work/shared/data/flickr8k --num-images 64 --batch-size 16 --steps 5
  (`python -m benchmarks.train_throughput --collate-only ...` runs the same.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from altcap.models.loading import ModelConfig, load_model
from altcap.train.data import Example, make_collate, read_split_examples
from benchmarks.common import RESULTS_DIR, compute_ratios, utc_stamp, write_report
from benchmarks.train_manifests import prepare_model_id, write_flickr_manifest, write_tiny_manifest


def measure_collate(args: argparse.Namespace, examples: list[Example]) -> dict[str, dict[str, float]]:
    """Milliseconds per batch of `altcap train`'s collate, with pixels (cache off) and text-only
    (cache on: images never decoded), on the same first `batch_size` examples; warm-up excluded.

    Args:
        args: options with `model_id`, `family`, `batch_size` and `steps` (timed batches).
        examples: training examples, cycled through to fill one batch.

    Returns:
        collate name -> min_ms and median_ms.
    """
    config = ModelConfig(
        model_id=args.model_id,
        family=args.family,
        device="cpu",
        # train_throughput --collate-only passes its own options, which have no pixel budget.
        max_image_pixels=getattr(args, "max_image_pixels", None),
    )
    _, processor, family = load_model(config)
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
    medians = {name: 1 / figures["median_ms"] for name, figures in results.items()}
    speedup = compute_ratios(medians, "collate_with_pixels")["collate_text_only"]
    report = {
        "device": "cpu",
        "model_id": args.model_id,
        "settings": {k: str(v) for k, v in vars(args).items() if k not in {"out"}},
        "results": results,
        "baseline": "collate_with_pixels",
        "text_only_speedup": speedup,
    }
    out = write_report(args.out or RESULTS_DIR / f"train_collate-{utc_stamp()}.json", report)
    for name, figures in results.items():
        print(f"{name:22s} median {figures['median_ms']:9.1f} ms  min {figures['min_ms']:9.1f} ms / batch")
    print(f"text-only collate is {speedup:.1f}x faster")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true", help="tiny random BLIP-2 OPT (CPU smoke run)")
    source.add_argument("--model-id", help="hub id or folder")
    parser.add_argument("--family", help="altcap family; default inferred")
    parser.add_argument("--images", type=Path, help="Flickr8k folder; default synthetic images")
    parser.add_argument(
        "--max-image-pixels", type=int, help="model.max_image_pixels (chat VLMs); default the checkpoint's"
    )
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed batches per collate")
    parser.add_argument("--out", type=Path, help="JSON path; default benchmarks/results/train_collate-*.json")
    args = parser.parse_args(argv)
    args.random_arch = None
    return args


def main(argv: list[str] | None = None) -> Path:
    """Time both collates and write the JSON report; returns its path."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="altcap-collate-") as tmp:
        work = Path(tmp)
        args.model_id = prepare_model_id(args, work)
        if args.images:
            manifest = write_flickr_manifest(args.images, work / "data", args.num_images)
        else:
            manifest = write_tiny_manifest(work / "data", args.num_images)
        return write_collate_report(args, measure_collate(args, read_split_examples(manifest, "train", None)))


if __name__ == "__main__":
    main()
