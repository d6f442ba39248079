"""The training benchmark's altcap variants: `run_train` itself, timed from its own per-step log.

  altcap           feature cache, frozen modules freed from the GPU, text-only collate, fused AdamW,
                   bf16, at each of `--altcap-batch-sizes`.
  altcap_no_cache  the same with the feature cache off: what the cache itself contributes.
  altcap_compiled  compile=true (`--compile-mode`, `--compile-scope`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from altcap.config import load_config
from altcap.train.config import TrainConfig
from altcap.train.logs import read_log_rows
from altcap.train.run import run_train
from benchmarks.gpu_probe import UtilisationSampler, peak_memory_mb


def build_train_sets(
    args: argparse.Namespace, manifest: Path, out: Path, batch_size: int, use_cache: bool, compiled: bool
) -> list[str]:
    """The `--set key=value` overrides that give `run_train` the benchmark's model, data and LoRA."""
    sets = [
        f"model.model_id={args.model_id}",
        f"data.manifest={manifest}",
        f"output_dir={out}",
        f"feature_cache.enabled={str(use_cache).lower()}",
        f"feature_cache.dir={out.parent / 'features'}",
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
    return [*sets, f"model.family={args.family}"] if args.family else sets


def run_altcap(
    args: argparse.Namespace, manifest: Path, work: Path, batch_size: int, use_cache: bool, compiled: bool
) -> dict[str, Any]:
    """altcap's own path: `run_train` with the same model, data and LoRA settings.

    Args:
        args: the benchmark's options.
        manifest: the training manifest.
        work: scratch folder (runs and the shared feature cache go there).
        batch_size: this variant's batch size.
        use_cache: feature cache on.
        compiled: compile=true.

    Returns:
        Time-weighted samples/s and tokens/s over the timed steps, peak memory and per-step figures.
    """
    out = work / f"altcap-run-{batch_size}-cache-{use_cache}-compile-{compiled}"
    sets = build_train_sets(args, manifest, out, batch_size, use_cache, compiled)
    cfg = load_config(TrainConfig, None, {}, sets)
    start = time.perf_counter()
    with UtilisationSampler() as sampler:
        run_train(cfg)
    wall_s = time.perf_counter() - start
    all_rows = read_log_rows(cfg.output_dir / "train_log.jsonl")
    rows = all_rows[args.altcap_warmup_steps :]  # step 1 compiles; later ones meet new shapes
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # run_train resets CUDA peak stats after the one-off cache fill: the peak is training's own.
    training_peaks = [r["peak_gpu_memory_mb"] for r in rows if "peak_gpu_memory_mb" in r]
    return {
        "batch_size": batch_size,
        "group_by_length": args.group_by_length,
        **summarize_rows(rows),
        "peak_memory_mb": max(training_peaks) if training_peaks else peak_memory_mb(device),
        "gpu_utilisation_percent_incl_startup": sampler.mean_percent,
        "end_to_end_wall_s": wall_s,
        "first_step_s": all_rows[0]["elapsed_s"],  # compile time included
        "warmup_steps_elapsed_s": [r["elapsed_s"] for r in all_rows[: args.altcap_warmup_steps]],
        **per_step_figures(rows),
    }


def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Rates over the timed log rows."""
    elapsed_s = sum(r["elapsed_s"] for r in rows)
    samples = sum(r["samples"] for r in rows)
    caption_tokens = sum(r["caption_tokens"] for r in rows)
    return {
        # Time-weighted over the timed steps: all their samples over all their time.
        "samples_per_s": samples / elapsed_s,
        "samples_per_s_median": statistics.median(r["samples_per_s"] for r in rows),
        # The mean of per-step rates, as sessions up to 6 reported it (higher when steps vary).
        "samples_per_s_mean_of_steps": statistics.mean(r["samples_per_s"] for r in rows),
        "tokens_per_s": caption_tokens / elapsed_s,
        # Padding alone for encoder-decoder LMs (T5: the labels are the caption); decoder-only LMs'
        # labels also span the masked image and prompt positions, which this then counts too.
        "padding_share": 1 - caption_tokens / sum(r["padded_tokens"] for r in rows),
    }


def per_step_figures(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per timed step: where a mean hides slow steps, these show them and whether data was late."""
    return {
        "per_step_samples": [r["samples"] for r in rows],
        "per_step_elapsed_s": [r["elapsed_s"] for r in rows],
        "per_step_samples_per_s": [r["samples_per_s"] for r in rows],
        "per_step_data_wait_s": [r["data_wait_s"] for r in rows],
        "per_step_gc_s": [r["gc_s"] for r in rows],
        "per_step_label_length": [r["padded_tokens"] / r["samples"] for r in rows],
        "per_step_padding_positions": [r["padded_tokens"] - r["caption_tokens"] for r in rows],
    }
