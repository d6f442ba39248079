"""Training throughput: a tutorial LoRA loop, a plain bf16 PEFT loop, and altcap's `run_train`.

Same model, data, LoRA settings and batch size for all three; reports samples/s, caption tokens/s
and peak memory, with ratios against baseline A, as JSON in benchmarks/results/.

  A  tutorial loop: processor on PIL images every step, fp32, vision tower every step,
     fixed max-length padding.
  B  plain PEFT loop: bf16 autocast (fp32 on CPU), dynamic padding, vision tower every step.
  altcap: `run_train` (feature cache, bf16 where available, accelerate).

  python benchmarks/train_throughput.py --tiny                     # CPU smoke run (a test runs it)
  python benchmarks/train_throughput.py --collate-only --model-id altcap-mini \
      --images /work/shared/data/flickr8k --batch-size 64 --steps 5   # input pipeline alone (CPU)
  python benchmarks/train_throughput.py --model-id Salesforce/blip2-opt-2.7b --family blip2 \
      --images /work/shared/data/flickr8k --steps 30 --batch-size 16   # GPU
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from altcap.config import load_config
from altcap.models.loading import ModelConfig, apply_lora, load_model
from altcap.provenance import package_versions
from altcap.train.config import TrainConfig
from altcap.train.data import Example, load_rgb, make_collate, read_split_examples
from altcap.train.logs import read_log_rows
from altcap.train.run import run_train

RESULTS_DIR = Path(__file__).parent / "results"
TINY_CAPTIONS = (
    "a dog runs across the green grass in a park",
    "two children are playing on the beach near the water",
    "a woman sits on a bench and reads a book",
    "a cat sleeps on a brown couch next to a window",
)


def write_tiny_manifest(root: Path, num_images: int) -> Path:
    """Synthetic images + manifest (all train) for the CPU smoke mode."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(num_images):
        Image.new("RGB", (48, 40), (index * 29 % 256, index * 71 % 256, 90)).save(
            root / "images" / f"{index}.png"
        )
        rows.append(
            {"image": f"images/{index}.png", "captions": [TINY_CAPTIONS[index % 4]], "split": "train"}
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root / "manifest.jsonl"


def write_flickr_manifest(images_dir: Path, root: Path, num_images: int) -> Path:
    """A manifest over the first Flickr8k training images (first caption each)."""
    captions: dict[str, str] = {}
    for line in (images_dir / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t", 1)
        captions.setdefault(key.split("#")[0], caption)
    names = (images_dir / "Flickr_8k.trainImages.txt").read_text().split()[:num_images]
    rows = [
        {"image": str(images_dir / "Images" / n), "captions": [captions[n]], "split": "train"} for n in names
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root / "manifest.jsonl"


def build_random_blip2_opt_2_7b(folder: Path) -> Path:
    """BLIP-2 OPT-2.7B's architecture (ViT-g, Q-Former, OPT-2.7B) with random weights, saved to `folder`.

    No hub here: full-size compute and memory are measured on the real shapes, so the numbers
    transfer to Salesforce/blip2-opt-2.7b; only the tokenizer is the tiny test one (ids < 400).
    """
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    from altcap.models.tiny import IMAGE_TOKEN, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer("opt", (IMAGE_TOKEN,))
    text = {
        "model_type": "opt",
        "hidden_size": 2560,
        "ffn_dim": 10240,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "word_embed_proj_dim": 2560,
        "vocab_size": 50272,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config = Blip2Config(
        text_config=text, num_query_tokens=32, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Blip2ForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    image_processor = BlipImageProcessor(size={"height": 224, "width": 224})  # ViT-g input size
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=32)
    processor.save_pretrained(folder)
    return folder


def release_memory() -> None:
    """Free the previous variant's model so each peak-memory figure covers one variant only (CUDA)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated (CUDA) or the process's peak RSS (CPU, cumulative)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pad_to_length(inputs: dict[str, Any], length: int, pad_ids: dict[str, int]) -> dict[str, Any]:
    """Right-pad every sequence tensor to a fixed length, as tutorials' padding="max_length" does."""
    padded = dict(inputs)
    for key, pad in pad_ids.items():
        tensor = inputs[key]
        extra = length - tensor.shape[1]
        if extra > 0:
            padded[key] = torch.nn.functional.pad(tensor, (0, extra), value=pad)
    return padded


def run_manual_loop(args: argparse.Namespace, examples: list[Example], tutorial: bool) -> dict[str, float]:
    """Baseline A (tutorial=True) or B: a hand-written LoRA loop, vision tower every step."""
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "float32" if tutorial or device == "cpu" else "bfloat16"
    model, processor, family = load_model(
        ModelConfig(model_id=args.model_id, family=args.family, dtype=dtype)
    )
    model = apply_lora(model, family, None, args.lora_r, args.lora_r, 0.05)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    pad_id = processor.tokenizer.pad_token_id
    samples = tokens = 0
    start = 0.0
    for step in range(args.steps + 1):  # step 0 warms up and is not timed
        if step == 1:
            start = time.perf_counter()
        batch = [examples[(step * args.batch_size + i) % len(examples)] for i in range(args.batch_size)]
        images = [load_rgb(e.image) for e in batch]
        inputs = family.build_inputs(processor, images, [e.prompt for e in batch], [e.caption for e in batch])
        if tutorial:
            pads = {"input_ids": pad_id, "attention_mask": 0, "labels": -100}
            inputs = pad_to_length(inputs, args.max_length, pads)
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        with torch.autocast(
            device_type=device, dtype=torch.bfloat16, enabled=not tutorial and device == "cuda"
        ):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= 1:
            samples += len(batch)
            tokens += int((inputs["labels"] != -100).sum())
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed_s = time.perf_counter() - start
    return {
        "samples_per_s": samples / elapsed_s,
        "tokens_per_s": tokens / elapsed_s,
        "peak_memory_mb": peak_memory_mb(device),
    }


def run_altcap(
    args: argparse.Namespace, manifest: Path, work: Path, tokens_per_sample: float, use_cache: bool
) -> dict[str, float]:
    """altcap's own path: `run_train` with the same model, data, LoRA and batch size."""
    sets = [
        f"model.model_id={args.model_id}",
        f"data.manifest={manifest}",
        f"output_dir={work / f'altcap-run-cache-{use_cache}'}",
        f"feature_cache.enabled={str(use_cache).lower()}",
        f"feature_cache.dir={work / 'features'}",
        f"batch_size={args.batch_size}",
        "grad_accum_steps=1",
        f"max_steps={args.steps + 1}",
        "epochs=1000",
        f"lora.r={args.lora_r}",
        f"lora.alpha={args.lora_r}",
        "data.val_split=null",
        "log_every_n_steps=1",
        "save_every_n_steps=100000",
        "report_to=none",
        f"num_workers={args.num_workers}",
    ]
    if args.family:
        sets.append(f"model.family={args.family}")
    cfg = load_config(TrainConfig, None, {}, sets)
    start = time.perf_counter()
    run_train(cfg)
    wall_s = time.perf_counter() - start
    rows = read_log_rows(cfg.output_dir / "train_log.jsonl")[1:]  # first step warms up
    samples_per_s = sum(r["samples_per_s"] for r in rows) / len(rows)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "samples_per_s": samples_per_s,
        "tokens_per_s": samples_per_s * tokens_per_sample,
        "peak_memory_mb": peak_memory_mb(device),
        "end_to_end_wall_s": wall_s,
    }


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random BLIP-2 OPT on CPU (smoke mode)")
    parser.add_argument(
        "--collate-only", action="store_true", help="time only the training collate, with and without pixels"
    )
    parser.add_argument("--model-id", help="hub id or folder (full-size runs)")
    parser.add_argument(
        "--random-blip2-opt-2.7b",
        dest="random_fullsize",
        action="store_true",
        help="BLIP-2 OPT-2.7B shapes with random weights (GPU, no download)",
    )
    parser.add_argument("--family", help="altcap family; default inferred")
    parser.add_argument("--images", type=Path, help="Flickr8k folder; default synthetic images")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per variant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64, help="baseline A's fixed padding length")
    parser.add_argument(
        "--num-workers", type=int, default=0, help="altcap's DataLoader workers (its num_workers field)"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON path; default benchmarks/results/train_throughput-<time>.json"
    )
    args = parser.parse_args(argv)
    if not (args.tiny or args.model_id or args.random_fullsize):
        parser.error("give --model-id or --random-blip2-opt-2.7b (GPU runs), or --tiny (CPU smoke run)")
    return args


def describe_model(args: argparse.Namespace) -> str:
    """What was measured, for the report."""
    if args.tiny:
        return "tiny random blip2-opt"
    return "blip2-opt-2.7b architecture, random weights" if args.random_fullsize else args.model_id


def write_collate_report(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> Path:
    """Print and save the collate timings as JSON; returns its path."""
    speedup = results["collate_with_pixels"]["median_ms"] / results["collate_text_only"]["median_ms"]
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": "cpu",
        "model_id": describe_model(args),
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


def main(argv: list[str] | None = None) -> Path:
    """Run the three variants and write the JSON report; returns its path."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="altcap-bench-") as tmp:
        work = Path(tmp)
        if args.tiny:
            from altcap.models.tiny import build_tiny_model

            args.model_id = str(build_tiny_model("blip2", work / "model", variant="opt"))
            args.family = "blip2"
        elif args.random_fullsize:
            args.model_id = str(build_random_blip2_opt_2_7b(work / "model"))
            args.family = "blip2"
        if args.images:
            manifest = write_flickr_manifest(args.images, work / "data", args.num_images)
        else:
            manifest = write_tiny_manifest(work / "data", args.num_images)
        examples = read_split_examples(manifest, "train", None)
        if args.collate_only:
            return write_collate_report(args, measure_collate(args, examples))
        results: dict[str, dict[str, float]] = {}
        for name, tutorial in (("A_tutorial_fp32", True), ("B_peft_bf16", False)):
            release_memory()
            results[name] = run_manual_loop(args, examples, tutorial)
        release_memory()
        b = results["B_peft_bf16"]
        tokens_per_sample = b["tokens_per_s"] / b["samples_per_s"]
        results["altcap"] = run_altcap(args, manifest, work, tokens_per_sample, use_cache=True)
        release_memory()
        # The same path with the feature cache off isolates what the cache itself contributes.
        results["altcap_no_cache"] = run_altcap(args, manifest, work, tokens_per_sample, use_cache=False)
    base = results["A_tutorial_fp32"]["samples_per_s"]
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "model_id": describe_model(args),
        "settings": {k: str(v) for k, v in vars(args).items() if k not in {"out"}},
        "memory_note": "CUDA: peak allocated per variant; CPU: process peak RSS, cumulative over variants",
        "results": results,
        "speedup_vs_A": {name: r["samples_per_s"] / base for name, r in results.items()},
        "versions": package_versions(),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    kind = "tiny" if args.tiny else "random-blip2-opt-2.7b" if args.random_fullsize else "gpu"
    out = args.out or RESULTS_DIR / f"train_throughput-{kind}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({"results": results, "speedup_vs_A": report["speedup_vs_A"]}, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
