"""Training throughput: a tutorial LoRA loop, a plain bf16 PEFT loop, and altcap's `run_train`.

Same model, data, LoRA settings and batch size for all; reports samples/s, caption tokens/s, peak
GPU memory, GPU utilisation, FLOPs per sample (torch's FlopCounterMode) and model FLOPs
utilisation, with ratios against the baselines, as JSON in benchmarks/results/.

  A          tutorial loop: processor on PIL images every step, fp32 weights, vision tower every
             step, padding to a fixed max length (`--max-length`), default AdamW.
  B          plain bf16 PEFT loop as issue #13 defines it: A with the model in bf16 (+ autocast),
             nothing else changed (fixed-length padding kept).
  B_dynamic  B plus dynamic padding: a stronger reference (a loop with no padding waste).
  altcap     `run_train` itself (feature cache, frozen modules freed from the GPU, text-only
             collate, fused AdamW, bf16), at `--altcap-batch-sizes`; altcap_no_cache isolates the cache.
  altcap_compiled  altcap with compile=true (`--compile-mode`, `--compile-scope`) at each of
             `--altcap-batch-sizes`; `--compile` compiles every altcap variant.

A fixed batch checks that altcap's cached-feature loss equals the plain forward's loss (B's model).

  python benchmarks/train_throughput.py --tiny                     # CPU smoke run (a test runs it)
  python benchmarks/train_throughput.py --collate-only --model-id altcap-mini \
      --images /work/shared/data/flickr8k --batch-size 64 --steps 5   # input pipeline alone (CPU)
  python benchmarks/train_throughput.py --random-arch blip2-flan-t5-xl [--variants altcap,altcap_compiled] \
      --images /work/shared/data/flickr8k --steps 30 --batch-size 32 --lora-r 128   # GPU
  python benchmarks/train_throughput.py --random-arch blip2-flan-t5-xl \
      --variants B_dynamic,altcap,altcap_compiled --images <flickr8k> --num-images 256 \
      --captions-per-image 5 --altcap-batch-sizes 128 --num-workers 6 --steps 8 \
      --batch-size 32 --lora-r 128   # GPU, compiled vs eager (session 6)
  python benchmarks/train_throughput.py --random-arch llava-1.6-mistral-7b --variants altcap \
      --batch-size 4 --steps 10 [--qlora --gradient-checkpointing]   # GPU memory of LLaVA-7B
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch

# Sibling benchmark modules, also when a test loads this file by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_probe import UtilisationSampler, count_step_flops, peak_bf16_flops
from random_archs import ARCHS, build_random_arch
from train_collate import measure_collate, write_collate_report
from train_manifests import read_flickr_captions, write_flickr_manifest, write_tiny_manifest

from altcap.config import load_config
from altcap.models.loading import ModelConfig, apply_lora, load_model
from altcap.provenance import package_versions
from altcap.train.config import TrainConfig
from altcap.train.data import Example, load_rgb, read_split_examples
from altcap.train.logs import read_log_rows
from altcap.train.run import run_train

RESULTS_DIR = Path(__file__).parent / "results"


def release_memory() -> None:
    """Free the previous variant's model so each peak-memory figure covers one variant only (CUDA)."""
    torch.compiler.reset()  # compiled code holds on to the modules it was traced from
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


def pad_labels_to(model: Any, inputs: dict[str, Any], length: int) -> dict[str, Any]:
    """The batch with its label sequence padded to `length`: the decoder's input for an
    encoder-decoder LM (T5), the whole token sequence for a decoder-only one."""
    encoder_decoder = getattr(model.config, "use_decoder_only_language_model", True) is False
    pads = {"labels": -100} if encoder_decoder else {"input_ids": 0, "attention_mask": 0, "labels": -100}
    return pad_to_length(inputs, length, pads)


def cached_flops_by_label_length(
    model: Any, family: Any, features: dict[str, torch.Tensor], inputs: dict[str, Any]
) -> list[list[int]]:
    """[label length, FLOPs per sample] of a cached training step at four padded lengths.

    Counted FLOPs are a polynomial of degree 2 in the sequence length (matmuls linear, attention
    quadratic), so three lengths fix it and the fourth checks it (`flops_at_label_length`); every
    timed step's FLOPs then follow from its own padded length, as the FLOP counter would count them.
    """
    batch_size, start = inputs["labels"].shape
    points = []
    forward = family.feature_cache.forward_from_features
    for length in (start, start + 8, start + 16, start + 24):
        padded = pad_labels_to(model, inputs, length)
        flops = count_step_flops(lambda padded=padded, forward=forward: forward(model, features, padded))
        points.append([length, round(flops / batch_size)])
    return points


def flops_at_label_length(points: list[list[int]], length: float) -> float:
    """FLOPs per sample at `length`: the quadratic through the first three counted points (Lagrange)."""
    (x0, y0), (x1, y1), (x2, y2) = points[:3]
    return (
        y0 * (length - x1) * (length - x2) / ((x0 - x1) * (x0 - x2))
        + y1 * (length - x0) * (length - x2) / ((x1 - x0) * (x1 - x2))
        + y2 * (length - x0) * (length - x1) / ((x2 - x0) * (x2 - x1))
    )


VARIANTS = ("A_tutorial_fp32", "B_peft_bf16", "B_dynamic", "altcap", "altcap_no_cache", "altcap_compiled")
DEFAULT_VARIANTS = VARIANTS[:-1]  # compiling is opt-in: minutes of compile time on a CPU


def run_manual_loop(args: argparse.Namespace, examples: list[Example], variant: str) -> dict[str, Any]:
    """Baseline A, B or B_dynamic: a hand-written LoRA loop, vision tower every step.

    B_dynamic also checks altcap's cached-feature loss against the plain forward on a fixed batch
    and counts FLOPs per sample of both paths (it has the bf16 model loaded anyway).
    """
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fp32 = variant == "A_tutorial_fp32" or device == "cpu"
    model, processor, family = load_model(
        ModelConfig(model_id=args.model_id, family=args.family, dtype="float32" if fp32 else "bfloat16")
    )
    model = apply_lora(model, family, None, args.lora_r, args.lora_r, 0.05)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    pad_id = processor.tokenizer.pad_token_id
    samples = tokens = 0
    start = 0.0
    with UtilisationSampler() as sampler:
        for step in range(args.steps + 1):  # step 0 warms up and is not timed
            if step == 1:
                start = time.perf_counter()
                sampler.samples.clear()
            inputs = build_batch(args, examples, step, family, processor, variant, pad_id, device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=not fp32):
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= 1:
                samples += args.batch_size
                tokens += int((inputs["labels"] != -100).sum())
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed_s = time.perf_counter() - start
    result = {
        "samples_per_s": samples / elapsed_s,
        "tokens_per_s": tokens / elapsed_s,
        "peak_memory_mb": peak_memory_mb(device),
        "gpu_utilisation_percent": sampler.mean_percent,
    }
    if variant == "B_dynamic":
        inputs = build_batch(args, examples, 0, family, processor, variant, pad_id, device)
        result["fixed_batch"] = check_fixed_batch(model, family, inputs, device, fp32)
    return result


def build_batch(
    args: argparse.Namespace,
    examples: list[Example],
    step: int,
    family: Any,
    processor: Any,
    variant: str,
    pad_id: int,
    device: str,
) -> dict[str, Any]:
    """The step's batch as a tutorial builds it: decode images, run the processor, pad (A and B)."""
    batch = [examples[(step * args.batch_size + i) % len(examples)] for i in range(args.batch_size)]
    images = [load_rgb(e.image) for e in batch]
    inputs = family.build_inputs(processor, images, [e.prompt for e in batch], [e.caption for e in batch])
    if variant != "B_dynamic":
        inputs = pad_to_length(
            inputs, args.max_length, {"input_ids": pad_id, "attention_mask": 0, "labels": -100}
        )
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def check_fixed_batch(
    model: Any, family: Any, inputs: dict[str, Any], device: str, fp32: bool
) -> dict[str, float]:
    """Loss of the plain forward vs altcap's cached-feature forward on one batch (eval mode, so no
    dropout), and FLOPs per sample of a training step on each path."""
    model.eval()
    batch_size = inputs["input_ids"].shape[0]
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=not fp32)
    with torch.no_grad(), autocast:
        plain = model(**inputs).loss.float().item()
        features = family.feature_cache.encode_images(model, inputs)
        cached = family.feature_cache.forward_from_features(model, features, inputs).float().item()
    with autocast:
        flops_full = count_step_flops(lambda: model(**inputs).loss)
        forward = family.feature_cache.forward_from_features
        flops_cached = count_step_flops(lambda: forward(model, features, inputs))
        by_length = cached_flops_by_label_length(model, family, features, inputs)
    model.zero_grad(set_to_none=True)
    return {
        "flops_per_sample_cached_by_label_length": by_length,
        # The quadratic through the first three counts, at the fourth length: equal when exact.
        "flops_by_length_fourth_point_predicted": flops_at_label_length(by_length, by_length[3][0]),
        "loss_plain_forward": plain,
        "loss_from_cached_features": cached,
        "relative_difference": abs(plain - cached) / max(abs(plain), 1e-12),
        "flops_per_sample_full_step": flops_full / batch_size,
        "flops_per_sample_cached_step": flops_cached / batch_size,
    }


def run_altcap(
    args: argparse.Namespace, manifest: Path, work: Path, batch_size: int, use_cache: bool, compiled: bool
) -> dict[str, Any]:
    """altcap's own path: `run_train` with the same model, data and LoRA settings."""
    out = work / f"altcap-run-{batch_size}-cache-{use_cache}-compile-{compiled}"
    sets = [
        f"model.model_id={args.model_id}",
        f"data.manifest={manifest}",
        f"output_dir={out}",
        f"feature_cache.enabled={str(use_cache).lower()}",
        f"feature_cache.dir={work / 'features'}",
        f"batch_size={batch_size}",
        "grad_accum_steps=1",
        f"max_steps={args.steps + args.altcap_warmup_steps}",
        "epochs=1000",
        f"lora.r={args.lora_r}",
        f"lora.alpha={args.lora_r}",
        "data.val_split=null",
        "log_every_n_steps=1",
        "save_every_n_steps=100000",
        "report_to=none",
        f"num_workers={args.num_workers}",
        f"qlora={str(args.qlora).lower()}",
        f"gradient_checkpointing={str(args.gradient_checkpointing).lower()}",
        f"compile={str(compiled).lower()}",
        f"compile_mode={args.compile_mode}",
        f"compile_scope={args.compile_scope}",
        f"group_by_length={str(args.group_by_length).lower()}",
    ]
    if args.family:
        sets.append(f"model.family={args.family}")
    cfg = load_config(TrainConfig, None, {}, sets)
    start = time.perf_counter()
    with UtilisationSampler() as sampler:
        run_train(cfg)
    wall_s = time.perf_counter() - start
    all_rows = read_log_rows(cfg.output_dir / "train_log.jsonl")
    rows = all_rows[args.altcap_warmup_steps :]  # step 1 compiles; later ones meet new shapes
    elapsed_s = sum(r["elapsed_s"] for r in rows)
    samples = sum(r["samples"] for r in rows)
    caption_tokens = sum(r["caption_tokens"] for r in rows)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # run_train resets CUDA peak stats after the one-off cache fill: the peak is training's own.
    training_peaks = [r["peak_gpu_memory_mb"] for r in rows if "peak_gpu_memory_mb" in r]
    return {
        "batch_size": batch_size,
        "group_by_length": args.group_by_length,
        # Time-weighted over the timed steps: all their samples over all their time.
        "samples_per_s": samples / elapsed_s,
        "samples_per_s_median": statistics.median(r["samples_per_s"] for r in rows),
        # The mean of per-step rates, as sessions up to 6 reported it (higher when steps vary).
        "samples_per_s_mean_of_steps": statistics.mean(r["samples_per_s"] for r in rows),
        "tokens_per_s": caption_tokens / elapsed_s,
        # Padding alone for encoder-decoder LMs (T5: the labels are the caption); decoder-only LMs'
        # labels also span the masked image and prompt positions, which this then counts too.
        "padding_share": 1 - caption_tokens / sum(r["padded_tokens"] for r in rows),
        "peak_memory_mb": max(training_peaks) if training_peaks else peak_memory_mb(device),
        "gpu_utilisation_percent_incl_startup": sampler.mean_percent,
        "end_to_end_wall_s": wall_s,
        "first_step_s": all_rows[0]["elapsed_s"],  # compile time included
        "warmup_steps_elapsed_s": [r["elapsed_s"] for r in all_rows[: args.altcap_warmup_steps]],
        # Per timed step: where a mean hides slow steps, these show them and whether data was late.
        "per_step_samples": [r["samples"] for r in rows],
        "per_step_elapsed_s": [r["elapsed_s"] for r in rows],
        "per_step_samples_per_s": [r["samples_per_s"] for r in rows],
        "per_step_data_wait_s": [r["data_wait_s"] for r in rows],
        "per_step_gc_s": [r["gc_s"] for r in rows],
        "per_step_label_length": [r["padded_tokens"] / r["samples"] for r in rows],
        "per_step_padding_positions": [r["padded_tokens"] - r["caption_tokens"] for r in rows],
    }


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
        "--random-arch", choices=ARCHS, help="a real architecture with random weights (GPU, no download)"
    )
    parser.add_argument("--family", help="altcap family; default inferred")
    parser.add_argument("--images", type=Path, help="Flickr8k folder; default synthetic images")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument(
        "--captions-per-image", type=int, default=1, choices=range(1, 6), metavar="{1..5}",
        help="Flickr8k captions per image: more examples",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per variant")
    parser.add_argument(
        "--altcap-warmup-steps", type=int, default=1,
        help="untimed first steps of altcap variants (compile; e.g. one epoch, whose steps meet each "
        "padded length for the first time)",
    )
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
    plan = [(n, partial(run_manual_loop, args, examples, n)) for n in VARIANTS[:3] if n in args.variants]
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


def add_derived_figures(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tokens/s, FLOPs, MFU and the speed-ups, from the measured figures."""
    reference = results.get("B_dynamic") or results.get("B_peft_bf16") or {}
    checks = reference.get("fixed_batch", {})
    tokens_per_sample = reference["tokens_per_s"] / reference["samples_per_s"] if reference else None
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = peak_bf16_flops(device_name)
    for name, result in results.items():
        if tokens_per_sample is not None and "tokens_per_s" not in result:
            result["tokens_per_s"] = result["samples_per_s"] * tokens_per_sample
        key = (
            "flops_per_sample_cached_step"
            if name.startswith("altcap") and name != "altcap_no_cache"
            else "flops_per_sample_full_step"
        )
        by_length = checks.get("flops_per_sample_cached_by_label_length")
        if key == "flops_per_sample_cached_step" and by_length and "per_step_label_length" in result:
            add_per_step_flops(result, by_length, peak)
        elif key in checks:
            result["flops_per_sample"] = checks[key]
            result["achieved_tflops"] = checks[key] * result["samples_per_s"] / 1e12
            result["mfu"] = checks[key] * result["samples_per_s"] / peak if peak else None
    ratios: dict[str, dict[str, float]] = {}
    for baseline in ("A_tutorial_fp32", "B_peft_bf16", "B_dynamic"):
        if baseline in results:
            base = results[baseline]["samples_per_s"]
            ratios[f"vs_{baseline}"] = {name: r["samples_per_s"] / base for name, r in results.items()}
    return {"device": device_name, "peak_bf16_flops": peak, "fixed_batch_check": checks, "speedups": ratios}


def add_per_step_flops(result: dict[str, Any], by_length: list[list[int]], peak: float | None) -> None:
    """FLOPs and MFU from every timed step's own padded length (padding counted, as the FLOP counter
    counts what runs), and an MFU without padding: each padding position charged at the cost of
    the step's last position, the dearest one, so that figure is a lower bound (a loose one for
    decoder-only LMs, whose masked image and prompt positions count as padding here)."""
    step_flops, useful_flops = [], []
    for n, length, padding in zip(
        result["per_step_samples"], result["per_step_label_length"], result["per_step_padding_positions"],
        strict=True,
    ):
        flops = flops_at_label_length(by_length, length)
        last_position = flops - flops_at_label_length(by_length, length - 1)
        step_flops.append(n * flops)
        useful_flops.append(n * flops - padding * last_position)
    elapsed_s = sum(result["per_step_elapsed_s"])
    result["flops_per_sample"] = sum(step_flops) / sum(result["per_step_samples"])
    result["achieved_tflops"] = sum(step_flops) / elapsed_s / 1e12
    result["mfu"] = sum(step_flops) / elapsed_s / peak if peak else None
    result["mfu_without_padding_lower_bound"] = sum(useful_flops) / elapsed_s / peak if peak else None
    if peak:
        result["per_step_mfu"] = [
            f / t / peak for f, t in zip(step_flops, result["per_step_elapsed_s"], strict=True)
        ]


def main(argv: list[str] | None = None) -> Path:
    """Run the variants and write the JSON report; returns its path."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="altcap-bench-") as tmp:
        work = Path(tmp)
        if args.tiny:
            from altcap.models.tiny import build_tiny_model

            args.model_id = str(build_tiny_model("blip2", work / "model", variant="opt"))
        elif args.random_arch:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            corpus = read_flickr_captions(args.images) if args.images else None
            args.model_id = str(build_random_arch(args.random_arch, work / "model", device, corpus))
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
    derived = add_derived_figures(args, results)
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": derived.pop("device"),
        "model_id": describe_model(args),
        "settings": {k: str(v) for k, v in vars(args).items() if k not in {"out"}},
        "memory_note": "CUDA: peak allocated per variant (altcap: training steps, after the cache fill); "
        "CPU: process peak RSS, cumulative over variants",
        "results": results,
        **derived,
        "versions": package_versions(),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    kind = "tiny" if args.tiny else args.random_arch or "gpu"
    out = args.out or RESULTS_DIR / f"train_throughput-{kind}{'-qlora' if args.qlora else ''}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
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
    main(sys.argv[1:])
