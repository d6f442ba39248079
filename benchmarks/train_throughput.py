"""Training throughput: a tutorial LoRA loop, a plain bf16 PEFT loop, and altcap's `run_train`.

Same model, data, LoRA settings and batch size for all; reports samples/s, caption tokens/s, peak
GPU memory, GPU utilisation, FLOPs per sample (torch's FlopCounterMode) and model FLOPs
utilisation, with ratios against the baselines, as JSON in benchmarks/results/.

  A, B, B_dynamic  hand-written loops, vision tower every step (`benchmarks/train_baselines.py`).
  altcap           `run_train` itself at `--altcap-batch-sizes`; altcap_no_cache isolates the cache;
  altcap_compiled  compile=true; `--compile` compiles every altcap variant (`train_altcap.py`).

A fixed batch checks that altcap's cached-feature loss equals the plain forward's loss (B's model).

  python -m benchmarks.train_throughput --tiny                     # CPU smoke run (a test runs it)
  python -m benchmarks.train_throughput --collate-only --model-id altcap-mini \\
      --images /work/shared/data/flickr8k --batch-size 64 --steps 5   # input pipeline alone (CPU)
  python -m benchmarks.train_throughput --random-arch blip2-flan-t5-xl [--variants altcap,altcap_compiled] \\
      --images /work/shared/data/flickr8k --steps 30 --batch-size 32 --lora-r 128   # GPU
  python -m benchmarks.train_throughput --random-arch blip2-flan-t5-xl \\
      --variants B_dynamic,altcap,altcap_compiled --images <flickr8k> --num-images 256 \\
      --captions-per-image 5 --altcap-batch-sizes 128 --num-workers 6 --steps 8 \\
      --batch-size 32 --lora-r 128   # GPU, compiled vs eager (session 6)
  python -m benchmarks.train_throughput --random-arch llava-1.6-mistral-7b --variants altcap \\
      --batch-size 4 --steps 10 [--qlora --gradient-checkpointing]   # GPU memory of LLaVA-7B
"""

from __future__ import annotations

import argparse
import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from altcap.train.data import read_split_examples
from benchmarks import train_baselines
from benchmarks.common import RESULTS_DIR, utc_stamp, write_report
from benchmarks.gpu_probe import release_memory
from benchmarks.random_archs import ARCHS
from benchmarks.train_altcap import run_altcap
from benchmarks.train_collate import measure_collate, write_collate_report
from benchmarks.train_flops import add_derived_figures
from benchmarks.train_manifests import prepare_model_id, write_flickr_manifest, write_tiny_manifest

VARIANTS = (*train_baselines.NAMES, "altcap", "altcap_no_cache", "altcap_compiled")
DEFAULT_VARIANTS = VARIANTS[:-1]  # compiling is opt-in: minutes of compile time on a CPU


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """What to time and on which data."""
    parser.add_argument("--tiny", action="store_true", help="tiny random BLIP-2 OPT on CPU (smoke mode)")
    parser.add_argument(
        "--collate-only", action="store_true", help="time only the training collate, with and without pixels"
    )
    parser.add_argument("--model-id", help="hub id or folder (full-size runs)")
    parser.add_argument(
        "--random-arch", choices=ARCHS, help="a real architecture with random weights (GPU, no download)"
    )
    parser.add_argument("--family", help="altcap family; default inferred")
    parser.add_argument("--images", type=Path, help="Flickr8k folder; default synthetic images")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument(
        "--captions-per-image", type=int, default=1, choices=range(1, 6), metavar="{1..5}",
        help="Flickr8k captions per image: more examples",
    )  # fmt: skip


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """How each variant trains and is timed."""
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per variant")
    parser.add_argument(
        "--altcap-warmup-steps", type=int, default=1,
        help="untimed first steps of altcap variants (compile; e.g. one epoch, whose steps meet each "
        "padded length for the first time)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--altcap-batch-sizes", default=None, help="comma list for the altcap variant; default --batch-size"
    )
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma list of {VARIANTS}")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64, help="A's and B's fixed padding length")
    parser.add_argument("--qlora", action="store_true", help="altcap variants load the model in 4-bit NF4")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="for the altcap variants")
    parser.add_argument("--compile", action="store_true", help="every altcap variant with compile=true")
    parser.add_argument("--compile-mode", default="default", help="compile_mode of compiled altcap variants")
    parser.add_argument("--compile-scope", default="blocks", help="compile_scope of compiled altcap variants")
    parser.add_argument(
        "--group-by-length", action="store_true", help="altcap variants batch captions of similar length"
    )
    parser.add_argument(
        "--num-workers", type=int, default=0, help="altcap's DataLoader workers (its num_workers field)"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON path; default benchmarks/results/train_throughput-<time>.json"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_options(parser)
    add_run_options(parser)
    args = parser.parse_args(argv)
    if not (args.tiny or args.model_id or args.random_arch):
        parser.error("give --model-id or --random-arch (GPU runs), or --tiny (CPU smoke run)")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {unknown}; choose from {', '.join(VARIANTS)}")
    sizes = args.altcap_batch_sizes or str(args.batch_size)
    args.altcap_batch_sizes = [int(size) for size in sizes.split(",")]
    return args


def describe_model(args: argparse.Namespace) -> str:
    """What was measured, for the report."""
    if args.tiny:
        return "tiny random blip2-opt"
    return f"{args.random_arch} architecture, random weights" if args.random_arch else args.model_id


def measure_variants(args: argparse.Namespace, manifest: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Run the chosen variants one after another, freeing memory in between. Each result is printed
    as it lands: a GPU call cut short by its time limit still reports what it measured."""
    examples = read_split_examples(manifest, "train", None)
    altcap = partial(run_altcap, args, manifest, work)
    plan = [
        (name, partial(train_baselines.run_manual_loop, args, examples, name))
        for name in train_baselines.NAMES
        if name in args.variants
    ]
    for batch_size in args.altcap_batch_sizes:
        suffix = "" if batch_size == args.batch_size else f"_batch{batch_size}"
        if "altcap" in args.variants:
            plan.append((f"altcap{suffix}", partial(altcap, batch_size, True, args.compile)))
        if "altcap_compiled" in args.variants:  # side by side with the eager run at the same batch
            plan.append((f"altcap_compiled{suffix}", partial(altcap, batch_size, True, True)))
    if "altcap_no_cache" in args.variants:  # the cache off isolates what the cache itself contributes
        plan.append(("altcap_no_cache", partial(altcap, args.batch_size, False, args.compile)))
    results: dict[str, dict[str, Any]] = {}
    for name, measure in plan:
        release_memory()
        results[name] = measure()
        print(f"measured {name}: {json.dumps(results[name])}", flush=True)
    return results


def main(argv: list[str] | None = None) -> Path:
    """Run the variants and write the JSON report; returns its path."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="altcap-bench-") as tmp:
        work = Path(tmp)
        args.model_id = prepare_model_id(args, work)
        if args.images:
            per_image = args.captions_per_image
            manifest = write_flickr_manifest(args.images, work / "data", args.num_images, per_image)
        else:
            manifest = write_tiny_manifest(work / "data", args.num_images)
        if args.collate_only:
            return write_collate_report(
                args, measure_collate(args, read_split_examples(manifest, "train", None))
            )
        results = measure_variants(args, manifest, work)
    derived = add_derived_figures(results)
    report = {
        "device": derived.pop("device"),
        "model_id": describe_model(args),
        "settings": {k: str(v) for k, v in vars(args).items() if k not in {"out"}},
        "memory_note": "CUDA: peak allocated per variant (altcap: training steps, after the cache fill); "
        "CPU: process peak RSS, cumulative over variants",
        "results": results,
        **derived,
    }
    kind = "tiny" if args.tiny else args.random_arch or "gpu"
    name = f"train_throughput-{kind}{'-qlora' if args.qlora else ''}-{utc_stamp()}.json"
    out = write_report(args.out or RESULTS_DIR / name, report)
    print_table(report)
    return out


def print_table(report: dict[str, Any]) -> None:
    """The headline figures, one row per variant."""
    print(f"{report['model_id']} on {report['device']}")
    print(f"{'variant':18s} {'samples/s':>10s} {'tokens/s':>10s} {'peak MB':>9s} {'util%':>6s} {'MFU':>6s}")
    nan = float("nan")
    for name, r in report["results"].items():
        util = r.get("gpu_utilisation_percent", r.get("gpu_utilisation_percent_incl_startup"))
        mfu = r.get("mfu")
        print(
            f"{name:18s} {r['samples_per_s']:10.2f} {r.get('tokens_per_s', 0):10.1f} "
            f"{r['peak_memory_mb']:9.0f} {nan if util is None else util:6.1f} "
            f"{nan if mfu is None else mfu:6.3f}"
        )
    print(
        json.dumps(
            {"speedups": report["speedups"], "fixed_batch_check": report["fixed_batch_check"]}, indent=2
        )
    )


if __name__ == "__main__":
    main()
