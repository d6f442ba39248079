"""FLOPs, MFU and speed-ups of the training benchmark, from counted steps and the training log.

Counted FLOPs of a cached training step are a polynomial of degree 2 in the padded label length
(matmuls linear, attention quadratic): three counts fix it, a fourth checks it, and every timed
step's FLOPs then follow from its own padded length, as the FLOP counter would count them.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import compute_ratios
from benchmarks.gpu_probe import count_step_flops, peak_bf16_flops

BASELINES = ("A_tutorial_fp32", "B_peft_bf16", "B_dynamic")


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
    """[label length, FLOPs per sample] of a cached training step at four padded lengths."""
    batch_size, start = inputs["labels"].shape
    points = []
    for length in (start, start + 8, start + 16, start + 24):
        padded = pad_labels_to(model, inputs, length)
        flops = count_step_flops(
            lambda padded=padded: family.feature_cache.forward_from_features(model, features, padded)
        )
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


def add_derived_figures(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tokens/s, FLOPs, MFU and the speed-ups, from the measured figures.

    Args:
        results: variant name -> its measured figures (updated in place).

    Returns:
        device, peak_bf16_flops, fixed_batch_check and speedups (per baseline: variant -> ratio).
    """
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
    samples_per_s = {name: r["samples_per_s"] for name, r in results.items()}
    ratios = {f"vs_{base}": compute_ratios(samples_per_s, base) for base in BASELINES if base in results}
    return {"device": device_name, "peak_bf16_flops": peak, "fixed_batch_check": checks, "speedups": ratios}
