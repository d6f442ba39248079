"""torch-profiler view of altcap's training step from cached features, and of captioning (issue #13).

`train` loads the model as `altcap train` does (`load_train_model`, LoRA r = alpha = --lora-r),
caches one batch's features (`encode_images`), frees the cached frozen modules, and profiles what
`fit` does per step: batch to device, `forward_from_features` under autocast, backward, loss sync,
clip, fused AdamW, schedule, zero_grad. `caption` profiles `family.generate` on one batch; `encode`
only the part a feature cache replaces (e.g. a chat VLM's vision tower), the first phase of a
caption. Per step:
wall time, CUDA kernel time, GPU-busy fraction, kernel launches, top ops/kernels by self CUDA and
self CPU time; peak memory and its breakdown. CUDA fields are null on CPU.

  python -m benchmarks.profile_gpu train --tiny --steps 2 --out /tmp/p.json     # CPU smoke run
  PYTHONPATH=src python -m benchmarks.profile_gpu train --random-arch blip2-flan-t5-xl \\
    --images <flickr8k dir> --batch-size 32 --lora-r 128 --out $OUT/profile_train.json   # GPU
  PYTHONPATH=src python -m benchmarks.profile_gpu caption --random-arch blip2-flan-t5-xl \\
    --images <flickr8k dir> --batch-size 64 --out $OUT/profile_caption.json [--trace]    # GPU
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS_DIR, utc_now, utc_stamp, write_report
from benchmarks.profile_setup import make_train_step, setup_caption, setup_train
from benchmarks.profile_summary import CUDA_FIELDS, TABLES, profile_steps, summarize_events, summarize_memory
from benchmarks.random_archs import ARCHS
from benchmarks.train_manifests import prepare_model_id


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (model options as in `benchmarks.train_throughput`)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("mode", choices=("train", "caption", "encode"))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true", help="tiny random BLIP-2 OPT (CPU smoke run)")
    source.add_argument("--model-id", help="hub id or folder of a full-size model")
    source.add_argument("--random-arch", choices=ARCHS, help="a real architecture, random weights")
    parser.add_argument("--family", help="altcap family; default inferred")
    parser.add_argument("--images", type=Path, help="JPEG folder (or Flickr8k); default synthetic")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank and alpha (train)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps")
    parser.add_argument("--warmup-steps", type=int, default=2, help="unprofiled steps first (compiles)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile as `altcap train` does")
    parser.add_argument("--compile-mode", default="default", choices=("default", "reduce-overhead"))
    parser.add_argument("--compile-scope", default="blocks", choices=("blocks", "model"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="train config override"
    )
    parser.add_argument("--num-beams", type=int, default=3, help="caption mode")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="caption mode; = min_new_tokens")
    parser.add_argument("--cuda-graphs", action="store_true", help="caption mode: generation.cuda_graphs")
    parser.add_argument("--trace", action="store_true", help="also a gzipped Chrome trace beside --out")
    parser.add_argument("--out", type=Path, help="JSON path; default benchmarks/results/profile-*.json")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.warmup_steps + 1) < 1:
        parser.error(f"--steps {args.steps}, --batch-size {args.batch_size}: >= 1; --warmup-steps >= 0")
    if args.images is not None and not args.images.is_dir():
        parser.error(f"--images {args.images}: not a folder; give a folder of JPEGs or leave it out")
    return args


def run_profile(args: argparse.Namespace, scratch: Path) -> tuple[dict[str, Any], Any]:
    """Set up the mode, profile it, and build the report (the profiler is returned for --trace)."""
    model_id, train = prepare_model_id(args, scratch), args.mode == "train"
    state = (
        setup_train(args, model_id, scratch) if train else setup_caption(args, model_id, scratch, args.mode)
    )
    prof, walls_s, outputs = profile_steps(
        make_train_step(state) if train else state["step"], args.warmup_steps, args.steps
    )
    wall_s = sum(walls_s) / len(walls_s)
    result = {
        "step_wall_s": walls_s,
        "step_wall_s_mean": wall_s,
        **summarize_events(prof, args.steps, wall_s),
    }
    result["memory"] = summarize_memory(state["model"], state.get("optimizer"))
    result["losses" if train else "first_captions"] = [
        o.item() if isinstance(o, torch.Tensor) else o for o in outputs
    ]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings["train_config"] = state["cfg"].model_dump(mode="json") if train else None
    settings["generation"] = state.get("generation")
    report = {
        "created_at": utc_now(),
        "mode": args.mode,
        "model": "tiny random blip2-opt" if args.tiny else args.random_arch or args.model_id,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "settings": settings,
        "results": result,
    }
    return report, prof


def print_tables(report: dict[str, Any]) -> None:
    """Headline figures, memory and the top tables."""
    result = report["results"]
    print(f"{report['mode']}: {report['model']} on {report['device']}")
    for key in ("step_wall_s_mean", *CUDA_FIELDS, "memory"):
        print(f"  {key}: {result[key]}")
    for key in (key for key in TABLES if result[key]):
        print(f"\n{key} (per step)")
        for row in result[key]:
            name, calls, ms, percent = row.values()
            print(f"  {ms:10.3f} ms {percent:5.1f}% {calls:8.1f} calls  {name[:100]}")


def main(argv: list[str] | None = None) -> Path:
    """Profile the chosen mode and write the JSON report (and trace); returns the JSON path."""
    args = parse_args(argv)
    out = args.out or RESULTS_DIR / f"profile-{args.mode}-{utc_stamp()}.json"
    with tempfile.TemporaryDirectory(prefix="altcap-profile-") as tmp:
        report, prof = run_profile(args, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.trace:  # gzipped: the GPU machine returns files of at most 16 MiB
        raw = out.with_name(f"{out.stem}.trace.json")
        prof.export_chrome_trace(str(raw))
        raw.with_name(raw.name + ".gz").write_bytes(gzip.compress(raw.read_bytes()))
        raw.unlink()
        report["trace"] = f"{raw}.gz"
    write_report(out, report)
    print_tables(report)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
