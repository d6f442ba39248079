"""Captioning throughput: per-image loop vs batched `generate` vs altcap's `caption_items` path.

All modes run the same model, images and generation settings, with min_new_tokens forced to
max_new_tokens so every caption costs the same number of decoding steps (otherwise a mode that
happens to stop early would look faster). Each mode runs `--repeats` rounds (modes interleaved)
and the median is reported; `altcap_no_prefetch` is a diagnostic (the altcap path without the
image-prefetch thread). The per-image loop runs on the first `--per-image-images` images only
(it is slow; captions/s is a rate). Prints a table and writes JSON to benchmarks/results/.

    python benchmarks/caption_throughput.py --tiny                      # CPU smoke run, tiny BLIP-2
    python benchmarks/caption_throughput.py --random-arch blip2-opt-2.7b --num-images 256 \
        --batch-size 32 --max-new-tokens 20                            # GPU, no hub needed
    python benchmarks/caption_throughput.py --model-id Salesforce/blip2-opt-2.7b --num-images 256 \
        --batch-size 32 --images /work/shared/data/flickr8k/Images     # GPU, real weights
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from altcap.data.images import load_image_rgb
from altcap.infer.caption import CaptionItem, caption_items, order_for_throughput
from altcap.infer.config import CaptionConfig, GenerationConfig
from altcap.models.loading import ModelConfig, load_model
from altcap.models.text_inputs import move_to_device
from altcap.models.tiny import build_tiny_model
from altcap.provenance import package_versions

FLICKR8K_IMAGES = Path("/work/shared/data/flickr8k/Images")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true", help="Build a tiny random model (CPU smoke run).")
    source.add_argument("--model-id", help="Hub id or folder of a full-size model.")
    source.add_argument(
        "--random-arch",
        choices=sorted(RANDOM_ARCHS),
        help="Random weights in a real architecture (no hub needed).",
    )
    parser.add_argument("--tiny-family", default="blip2", help="Family of the --tiny model.")
    parser.add_argument(
        "--images", type=Path, default=None, help="Image folder (default: Flickr8k, else synthetic)."
    )
    parser.add_argument("--num-images", type=int, default=32)
    parser.add_argument(
        "--per-image-images", type=int, default=32, help="Images for the (slow) per-image loop."
    )
    parser.add_argument("--repeats", type=int, default=3, help="Rounds per mode; the median is reported.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-beams", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


# Sizes from the checkpoints' config.json. Throughput does not depend on weight values when every
# caption is forced to the same length, so random weights give real timings where the hub is out of
# reach. The tiny tokenizer keeps the LM head at ~400 rows instead of 50k (~5% fewer decoder FLOPs).
RANDOM_ARCHS = {
    "blip2-opt-2.7b": {
        "vision_config": {
            "hidden_size": 1408,
            "intermediate_size": 6144,
            "num_hidden_layers": 39,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
        },
        "qformer_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "encoder_hidden_size": 1408,
        },
        "text_config": {
            "model_type": "opt",
            "hidden_size": 2560,
            "ffn_dim": 10240,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "word_embed_proj_dim": 2560,
            "max_position_embeddings": 2048,
        },
        "num_query_tokens": 32,
    },
}


def build_random_arch(name: str, folder: Path, device: str) -> Path:
    """Save a random-weight BLIP-2 of a real size, with the tiny tokenizer and real image size."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from altcap.models.tiny import IMAGE_TOKEN, build_tiny_tokenizer

    spec = RANDOM_ARCHS[name]
    tokenizer = build_tiny_tokenizer("opt", (IMAGE_TOKEN,))
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config = Blip2Config(
        vision_config=spec["vision_config"],
        qformer_config=spec["qformer_config"],
        text_config={**spec["text_config"], **ids},
        num_query_tokens=spec["num_query_tokens"],
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    size = spec["vision_config"]["image_size"]
    processor = Blip2Processor(
        BlipImageProcessorPil(size={"height": size, "width": size}),
        tokenizer,
        num_query_tokens=spec["num_query_tokens"],
    )
    with torch.device(device):
        model = Blip2ForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def pick_images(folder: Path | None, count: int, scratch: Path) -> list[Path]:
    """`count` image paths: from the folder, else Flickr8k, else synthetic JPEGs in `scratch`."""
    folder = folder or (FLICKR8K_IMAGES if FLICKR8K_IMAGES.is_dir() else None)
    if folder is not None:
        paths = sorted(folder.glob("*.jpg"))[:count]
        if len(paths) < count:
            raise SystemExit(f"{folder}: only {len(paths)} .jpg images, --num-images asks for {count}")
        return paths
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = scratch / f"synthetic{index:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def synchronize(device: Any) -> None:
    # CUDA kernels run asynchronously; without a sync the timer stops before the work is done.
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_direct(
    model: Any, processor: Any, family: Any, paths: list[Path], batch_size: int, kwargs: dict
) -> dict:
    """Load images and call family.build_inputs + generate in plain batches; per-batch latencies kept."""
    latencies = []
    for start in range(0, len(paths), batch_size):
        began = time.perf_counter()
        images = [load_image_rgb(p) for p in paths[start : start + batch_size]]
        inputs = move_to_device(family.build_inputs(processor, images), model.device, model.dtype)
        with torch.inference_mode():
            family.generate(model, processor, inputs, kwargs)
        synchronize(model.device)
        latencies.append(time.perf_counter() - began)
    return {"seconds": sum(latencies), "batch_latencies_s": latencies}


def time_altcap(
    model: Any, processor: Any, family: Any, paths: list[Path], cfg: CaptionConfig, prefetch: bool = True
) -> dict:
    """altcap's own path: throughput ordering, (optional) prefetch thread, JSONL append + fsync per batch."""
    began = time.perf_counter()
    items = order_for_throughput([CaptionItem(p.name, p) for p in paths])
    written = caption_items(model, processor, family, items, cfg, progress=False, prefetch=prefetch)
    synchronize(model.device)
    assert written == len(paths)
    return {"seconds": time.perf_counter() - began}


def describe_hardware(device: Any) -> dict[str, Any]:
    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine()}
    info["cpu_threads"] = torch.get_num_threads()
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def load_benchmark_model(args: argparse.Namespace, scratch: Path) -> tuple[ModelConfig, Any, Any, Any]:
    if args.random_arch:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model_id = str(build_random_arch(args.random_arch, scratch / "random", device))
    else:
        model_id = args.model_id or str(build_tiny_model(args.tiny_family, scratch / "tiny", seed=0))
    model_cfg = ModelConfig(model_id=model_id, device=args.device, dtype=args.dtype)
    return (model_cfg, *load_model(model_cfg))


def measure_modes(
    args: argparse.Namespace, scratch: Path, loaded: tuple, paths: list[Path]
) -> dict[str, dict]:
    """Median seconds of each mode over `args.repeats` rounds; modes alternate within a round so
    clock or thermal drift hits them alike."""
    model_cfg, model, processor, family = loaded
    generation = GenerationConfig(
        num_beams=args.num_beams, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens
    )
    kwargs = generation.generate_kwargs()
    # Warm-up (untimed) at both batch shapes: allocator, kernel selection, caches.
    time_direct(model, processor, family, paths[:1], 1, kwargs)
    time_direct(model, processor, family, paths[: args.batch_size], args.batch_size, kwargs)
    per_image_paths = paths[: args.per_image_images]
    modes = {
        "per_image_loop": (
            per_image_paths,
            lambda: time_direct(model, processor, family, per_image_paths, 1, kwargs),
        ),
        "batched_generate": (
            paths,
            lambda: time_direct(model, processor, family, paths, args.batch_size, kwargs),
        ),
    }
    for name, prefetch in (("altcap_run_caption", True), ("altcap_no_prefetch", False)):
        modes[name] = (
            paths,
            lambda prefetch=prefetch: time_altcap(model, processor, family, paths, fresh_cfg(), prefetch),
        )
    counter = iter(range(10**6))

    def fresh_cfg() -> CaptionConfig:
        out = scratch / f"captions-{next(counter)}.jsonl"
        return CaptionConfig(
            model=model_cfg, images=scratch, out=out, generation=generation, batch_size=args.batch_size
        )

    runs: dict[str, list[dict]] = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, (_, timer) in modes.items():
            runs[name].append(timer())
    results = {name: summarize_runs(runs[name], len(mode_paths)) for name, (mode_paths, _) in modes.items()}
    latencies = [lat for r in runs["per_image_loop"] for lat in r["batch_latencies_s"]]
    return {"results": results, "single_image_latency_s": statistics.median(latencies), "generation": kwargs}


def summarize_runs(runs: list[dict], num_images: int) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "images": num_images,
        "seconds": seconds,
        "captions_per_s": num_images / seconds,
        "seconds_per_repeat": [r["seconds"] for r in runs],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        loaded = load_benchmark_model(args, scratch)
        paths = pick_images(args.images, args.num_images, scratch)
        measured = measure_modes(args, scratch, loaded, paths)
    _, model, _, family = loaded
    results = measured["results"]
    base = results["per_image_loop"]["captions_per_s"]
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": describe_hardware(model.device),
        "versions": package_versions(),
        "settings": {
            "model_id": args.model_id or args.random_arch or f"tiny-{args.tiny_family}",
            "family": family.name,
            "dtype": str(model.dtype),
            "device": str(model.device),
            "num_images": len(paths),
            "per_image_images": min(args.per_image_images, len(paths)),
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "generation": measured["generation"],
            "images": str(args.images or (FLICKR8K_IMAGES if FLICKR8K_IMAGES.is_dir() else "synthetic")),
        },
        "results": results,
        "speedup_vs_per_image": {name: r["captions_per_s"] / base for name, r in results.items()},
        "single_image_latency_s": measured["single_image_latency_s"],
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"caption throughput: {report['settings']['model_id']} on {report['settings']['device']}"
    )
    for column in ("mode", "captions/s", "seconds", "x per-image"):
        table.add_column(column)
    for name, result in report["results"].items():
        speedup = report["speedup_vs_per_image"][name]
        table.add_row(name, f"{result['captions_per_s']:.2f}", f"{result['seconds']:.2f}", f"{speedup:.2f}")
    Console().print(table)
    Console().print(f"single-image latency (median): {report['single_image_latency_s'] * 1000:.1f} ms")


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    report = run(args)
    print_table(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    tag = "tiny" if args.tiny else args.random_arch or Path(args.model_id).name
    out = args.out_dir / f"caption_throughput-{tag}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
