"""Issue #26 item 6, training: TRL `SFTTrainer` + liger-kernel vs `altcap train` on a chat VLM
(Qwen2.5-VL-3B shapes by default), wall time for whole epochs and peak GPU memory.

Same model folder (full-size architecture, random weights), same random 448 px images (256 Qwen
image tokens) and 20-30-word captions, LoRA r16/alpha32 on every language-model linear layer,
vision frozen, bf16, the same batch size, no gradient checkpointing, on both sides:

  trl     `chat_vlm_trl.train_trl`: from_pretrained + AutoProcessor, SFTTrainer(peft_config=...),
          `use_liger_kernel=True` (`--no-liger` for the plain trainer), prompt-completion loss.
  altcap  `run_train` (what `altcap train` runs) on the arch's shipped recipe with the batch,
          epochs and data overridden; `--altcap-cache auto|on|off` sets feature_cache.enabled
          (auto: the family decides; a cache, where a family has one, is built once and counted).

`--caption-lengths flickr8k` draws caption word counts from Flickr8k's length histogram (mean 11
words) instead of 20-30, the length mix where padding costs; `--altcap-set KEY=VALUE` adds an altcap
override (e.g. `group_by_length=true`, or `lean_activations=true` with `--sides altcap` for an A/B).

Each side runs in its own process and its time is end to end: loading the model, everything built
once, and every epoch. The ratio is TRL's wall time over altcap's (>1: altcap is faster).

    PYTHONPATH=src python -m benchmarks.chat_vlm_train --model-dir /root/chatbench/qwen2.5-vl-3b-instruct
    PYTHONPATH=src python -m benchmarks.chat_vlm_train --tiny --samples 4 --batch-size 2 --epochs 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.chat_bench import (
    LOG_EVERY_N_STEPS,
    card_slug,
    ensure_model,
    keep_earlier_peaks,
    read_gpu_peaks,
    run_child,
    summarize_log,
    write_json,
    write_train_data,
)
from benchmarks.chat_data import CAPTION_LENGTHS
from benchmarks.common import RESULTS_DIR, write_report
from benchmarks.phase_timer import host_profile
from benchmarks.recipe_memory import find_recipe

CACHE_SETTINGS = {"auto": "null", "on": "true", "off": "false"}
LOG_TIMING_KEYS = ("step", "epoch", "samples", "elapsed_s", "data_wait_s", "gc_s")


def build_altcap_sets(args: argparse.Namespace, folder: Path, manifest: Path, out: Path) -> list[str]:
    """`--set` overrides: the shared model, data, batch, epochs and LoRA; the recipe keeps the rest."""
    sets = [
        f"model.model_id={folder}",
        f"model.max_image_pixels={args.image_px * args.image_px}",
        f"data.manifest={manifest}",
        f"output_dir={out}",
        f"batch_size={args.batch_size}",
        "grad_accum_steps=1",
        f"epochs={args.epochs}",
        f"lora.r={args.lora_r}",
        f"lora.alpha={args.lora_alpha}",
        "gradient_checkpointing=false",
        f"feature_cache.enabled={CACHE_SETTINGS[args.altcap_cache]}",
        f"feature_cache.dir={out.parent / 'features'}",
        "data.val_split=null",
        "keep_best=false",
        f"log_every_n_steps={LOG_EVERY_N_STEPS}",
        "save_every_n_steps=1000000",
        "report_to=none",
        f"num_workers={args.num_workers}",
    ]
    # --altcap-set last: an A/B of one option (e.g. lean_activations=true) overrides the above.
    return [*sets, *(["precision=fp32"] if args.tiny else []), *args.altcap_set]


def train_altcap(args: argparse.Namespace, folder: Path, manifest: Path, work: Path) -> dict[str, Any]:
    """`run_train` on the arch's recipe with the shared settings; wall time end to end.

    Args:
        args: this benchmark's options.
        folder: the model folder.
        manifest: the training manifest.
        work: scratch folder.

    Returns:
        End-to-end seconds, the train log's steady samples/s, whether the cache was used, peaks.
    """
    import json

    from altcap.config import load_config
    from altcap.train.config import TrainConfig
    from altcap.train.logs import read_log_rows
    from altcap.train.run import run_train

    sets = build_altcap_sets(args, folder, manifest, work / "run")
    cfg = load_config(TrainConfig, find_recipe(args.arch), {}, sets)
    # The libraries are imported before the clock starts, as on TRL's side (peft, transformers and
    # trl imported before its timer): both sides time the work, not Python's imports.
    import peft  # noqa: F401
    from transformers import AutoModelForImageTextToText  # noqa: F401

    from altcap.models.registry import list_families

    list_families()  # imports every family module (and transformers' model classes they name)
    began = time.perf_counter()
    with keep_earlier_peaks() as earlier, host_profile("altcap-train"):
        run_train(cfg)
    wall_s = time.perf_counter() - began
    rows = read_log_rows(cfg.output_dir / "train_log.jsonl")
    provenance = json.loads((cfg.output_dir / "provenance.json").read_text(encoding="utf-8"))
    log = summarize_log(rows, skip=1)
    return {
        "side": "altcap",
        "variant": f"altcap train (feature_cache.enabled={CACHE_SETTINGS[args.altcap_cache]})",
        "feature_cache_used": provenance.get("feature_cache_used"),
        "cuda_graphs": provenance.get("cuda_graphs"),  # passes replayed / run eagerly (train.cuda_graphs)
        "end_to_end_s": round(wall_s, 2),
        "steps_s": round(sum(row["elapsed_s"] for row in rows if "elapsed_s" in row), 2),
        # run_train's own split of its wall time (validate, load, cache, prepare, fit, outputs).
        "phase_seconds": provenance.get("phase_seconds"),
        "samples": log_samples(rows),
        **log,
        # Each log row's timing: where fit's time outside the steady rows goes (the first row holds
        # the first pass and any capture; data_wait_s shows a starved GPU).
        "log_timing": [{key: row.get(key) for key in LOG_TIMING_KEYS} for row in rows if "elapsed_s" in row],
        **read_gpu_peaks(),
        # run_train resets the peak counter after a cache fill; the peak before any reset:
        "peak_allocated_before_resets_gb": max(earlier, default=None),
    }


def log_samples(rows: list[dict[str, Any]]) -> int:
    """Samples the train log counted over the whole run."""
    return sum(row.get("samples", 0) for row in rows)


def run_side(args: argparse.Namespace, folder: Path, manifest: Path, work: Path) -> dict[str, Any]:
    """The child process's work: one side."""
    if args.side == "trl":
        from benchmarks.chat_vlm_trl import train_trl

        return train_trl(args, folder, manifest, work)
    return train_altcap(args, folder, manifest, work)


def compare(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """TRL's wall time over altcap's and the peak-memory ratio, where both sides finished."""
    trl, altcap = sides.get("trl", {}), sides.get("altcap", {})
    if "end_to_end_s" not in trl or "end_to_end_s" not in altcap:
        return {"note": "a side is missing or failed; no ratio"}
    ratio = {"speedup_wall_trl_over_altcap": round(trl["end_to_end_s"] / altcap["end_to_end_s"], 3)}
    if trl.get("peak_allocated_gb") and altcap.get("peak_allocated_gb"):
        ratio["peak_memory_altcap_over_trl"] = round(
            altcap["peak_allocated_gb"] / trl["peak_allocated_gb"], 3
        )
    return ratio


def trl_available() -> bool:
    """Whether TRL (and datasets) import here; the CPU test machine has neither."""
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--arch", default="qwen2.5-vl-3b-instruct", help="Architecture (benchmarks.chat_archs) and recipe.")
    add("--model-dir", type=Path, default=None, help="Random-weight model folder (built if missing).")
    add("--tiny", action="store_true", help="Tiny sizes on the CPU (smoke test).")
    add("--samples", type=int, default=256, help="Training examples (one epoch).")
    add("--epochs", type=int, default=3)
    add("--batch-size", type=int, default=16)
    add("--image-px", type=int, default=448, help="Square image side (448: 256 Qwen tokens).")
    add("--lora-r", type=int, default=16)
    add("--lora-alpha", type=int, default=32)
    add("--num-workers", type=int, default=4, help="Data-loader workers on both sides.")
    add(
        "--altcap-cache",
        choices=tuple(CACHE_SETTINGS),
        default="auto",
        help="altcap's feature_cache.enabled.",
    )
    add("--caption-lengths", choices=CAPTION_LENGTHS, default="20-30", help="Caption length mix, in words.")
    add("--altcap-set", action="append", default=[], help="Extra altcap `--set KEY=VALUE` (repeatable).")
    add("--no-liger", dest="liger", action="store_false", help="TRL without liger-kernel.")
    add("--sides", default="altcap,trl", help="Which sides to run, in order.")
    add("--timeout-s", type=float, default=280, help="Per-side process limit.")
    add("--out", type=Path, default=None)
    add(
        "--host-profile-dir",
        type=Path,
        default=None,
        help="cProfile each side's timed part into this folder (diagnostic: slows the host side).",
    )
    add("--side", choices=("altcap", "trl"), default=None, help=argparse.SUPPRESS)  # child: one side
    add("--work", type=Path, default=None, help=argparse.SUPPRESS)  # child: shared scratch
    add("--result", type=Path, default=None, help=argparse.SUPPRESS)  # child's output
    return parser.parse_args(argv)


def child_argv(args: argparse.Namespace, side: str, folder: Path, work: Path) -> list[str]:
    """The options a side's process gets: this run's, with the built model and shared data."""
    argv = ["--side", side, "--work", str(work), "--model-dir", str(folder), "--arch", args.arch]
    argv += [
        "--samples",
        str(args.samples),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
    ]
    argv += [
        "--image-px",
        str(args.image_px),
        "--lora-r",
        str(args.lora_r),
        "--lora-alpha",
        str(args.lora_alpha),
    ]
    argv += ["--num-workers", str(args.num_workers), "--altcap-cache", args.altcap_cache]
    argv += ["--caption-lengths", args.caption_lengths, *(f"--altcap-set={item}" for item in args.altcap_set)]
    return argv + (["--tiny"] if args.tiny else []) + ([] if args.liger else ["--no-liger"])


def main(argv: list[str] | None = None) -> Path:
    """Run the requested sides (one process each) and write the report; returns its path."""
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="chat-vlm-train-"))
    image_size = (args.image_px, args.image_px)
    manifest = write_train_data(work / "data", args.samples, image_size, lengths=args.caption_lengths)
    if args.side:
        write_json(args.result, run_side(args, args.model_dir, manifest, work / args.side))
        return args.result
    folder, build_s = ensure_model(args.arch, args.model_dir or work / "model", args.tiny)
    if args.host_profile_dir:  # read by phase_timer.host_profile in each side's process
        os.environ["BENCH_PROFILE_DIR"] = str(args.host_profile_dir)
    sides: dict[str, dict[str, Any]] = {}
    for side in args.sides.split(","):
        if side == "trl" and not trl_available():
            print("trl side skipped: trl or datasets is not importable here", flush=True)
            sides["trl"] = {"skipped": "trl or datasets not importable"}
            continue
        sides[side] = run_child(
            "benchmarks.chat_vlm_train",
            child_argv(args, side, folder, work),
            work / f"{side}.json",
            args.timeout_s,
            # liger-kernel 0.8.5 imports output classes transformers 5.25 renamed: where altcap
            # runs on a newer transformers than TRL's stack supports, TRL gets its own path.
            os.environ.get("TRL_PYTHONPATH") if side == "trl" else None,
        )
        print(f"{side}: {sides[side].get('end_to_end_s', sides[side].get('error'))} s end to end", flush=True)
    report = {
        "benchmark": "chat_vlm_train",
        "what": f"{args.samples} random {args.image_px}px images x {args.epochs} epochs, "
        f"batch {args.batch_size}, LoRA r{args.lora_r}/alpha{args.lora_alpha} on the LM linears, "
        "vision frozen, no gradient checkpointing; end_to_end_s = load + everything built once + "
        "all epochs, one process per side",
        "caption_lengths_words": args.caption_lengths,
        "altcap_sets": args.altcap_set,
        "arch": args.arch,
        "tiny": args.tiny,
        "model_build_s": round(build_s, 1),
        "sides": sides,
        "comparison": compare(sides),
    }
    out = args.out or RESULTS_DIR / f"chat-vlm-train-{args.arch}-{card_slug()}.json"
    write_report(
        out, report, extra_versions=[name for name in ("trl", "datasets", "liger-kernel") if _has(name)]
    )
    print(report["comparison"])
    print(out)
    return out


def _has(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
