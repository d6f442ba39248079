"""The training benchmark's baselines: hand-written LoRA loops with the vision tower every step.

  A          tutorial loop: processor on PIL images every step, fp32 weights, vision tower every
             step, padding to a fixed max length (`--max-length`), default AdamW.
  B          plain bf16 PEFT loop as issue #13 defines it: A with the model in bf16 (+ autocast),
             nothing else changed (fixed-length padding kept).
  B_dynamic  B plus dynamic padding: a stronger reference (a loop with no padding waste).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from altcap.models.loading import ModelConfig, apply_lora, load_model
from altcap.train.data import Example, load_rgb
from benchmarks.gpu_probe import UtilisationSampler, count_step_flops, peak_memory_mb
from benchmarks.train_flops import cached_flops_by_label_length, flops_at_label_length, pad_to_length

NAMES = ("A_tutorial_fp32", "B_peft_bf16", "B_dynamic")


def run_manual_loop(args: argparse.Namespace, examples: list[Example], variant: str) -> dict[str, Any]:
    """Baseline A, B or B_dynamic: a hand-written LoRA loop, vision tower every step.

    B_dynamic also checks altcap's cached-feature loss against the plain forward on a fixed batch
    and counts FLOPs per sample of both paths (it has the bf16 model loaded anyway).

    Args:
        args: the benchmark's options (model, batch size, steps, LoRA rank, max length).
        examples: the training examples, cycled through.
        variant: one of NAMES.

    Returns:
        samples/s, caption tokens/s, peak memory, GPU utilisation (and B_dynamic's fixed batch).
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
        forward_cached = family.feature_cache.forward_from_features
        flops_cached = count_step_flops(lambda: forward_cached(model, features, inputs))
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
