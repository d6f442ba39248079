"""Qwen2.5-VL vision tower's elementwise ops (fp32 RMSNorm, fp32 rotary) one by one: transformers'
eager code vs fused alternatives, at one caption batch's shape (256 images x 1,024 patches), on
one GPU, in one run. For each: ms per call (CUDA events, median of --repeats), max |diff| and the
share of bf16 outputs bit-equal to transformers', and the compile seconds where it compiles.

    PYTHONPATH=src python -m benchmarks.tower_ops_speed --out /tmp/tower-ops.json
    PYTHONPATH=src python -m benchmarks.tower_ops_speed --patches 4096   # CPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS_DIR, synchronize, write_report


def hf_norm(weight: torch.Tensor, eps: float) -> Callable[[torch.Tensor], torch.Tensor]:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRMSNorm

    norm = Qwen2_5_VLRMSNorm(weight.numel(), eps=eps).to(weight.device, weight.dtype)
    norm.weight.data.copy_(weight)
    return norm.forward


def hf_rotary(q, k, cos, sin):
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    return apply_rotary_pos_emb_vision(q, k, cos, sin)


def timed(fn: Callable, args: tuple, repeats: int) -> tuple[float, object]:
    out = fn(*args)
    synchronize(args[0].device)
    times = []
    for _ in range(repeats):
        if args[0].is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(*args)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            out = fn(*args)
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times), out


def compare(reference, candidate) -> dict:
    ref = reference if isinstance(reference, tuple) else (reference,)
    cand = candidate if isinstance(candidate, tuple) else (candidate,)
    diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(ref, cand, strict=True))
    equal = sum((a == b).sum().item() for a, b in zip(ref, cand, strict=True)) / sum(a.numel() for a in ref)
    return {"max_abs_diff": diff, "bit_equal_share": equal}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patches", type=int, default=256 * 1024)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(RESULTS_DIR / "tower-ops-speed.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device).manual_seed(0)
    hidden, heads, head_dim, eps = 1280, 16, 80, 1e-6
    x = torch.randn(args.patches, hidden, device=device, generator=gen).bfloat16()
    weight = (1 + 0.1 * torch.randn(hidden, device=device, generator=gen)).bfloat16()
    qkv = torch.randn(args.patches, 3, heads, head_dim, device=device, generator=gen).bfloat16()
    q, k, _ = qkv.unbind(1)
    freqs = torch.randn(args.patches, head_dim // 2, device=device, generator=gen)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()

    norm = hf_norm(weight, eps)
    variants: dict[str, tuple[Callable, tuple]] = {
        "norm_hf_eager": (norm, (x,)),
        "norm_F_rms_norm_bf16_in": (lambda t: weight * F.rms_norm(t, (hidden,), eps=eps), (x,)),
        "norm_F_rms_norm_fp32_in": (
            lambda t: weight * F.rms_norm(t.float(), (hidden,), eps=eps).to(t.dtype),
            (x,),
        ),
        "rotary_hf_eager": (hf_rotary, (q, k, cos, sin)),
    }
    compiled = {
        "norm_compiled": (norm, (x,)),
        "rotary_compiled": (hf_rotary, (q, k, cos, sin)),
    }
    rows: dict[str, dict] = {}
    with torch.no_grad():
        ref_norm = norm(x)
        ref_rot = hf_rotary(q, k, cos, sin)
        for name, (fn, fn_args) in variants.items():
            ms, out = timed(fn, fn_args, args.repeats)
            rows[name] = {"ms": ms, **compare(ref_norm if name.startswith("norm") else ref_rot, out)}
        for name, (fn, fn_args) in compiled.items():
            begin = time.perf_counter()
            fast = torch.compile(fn, dynamic=True)
            fast(*fn_args)
            synchronize(device)
            compile_s = time.perf_counter() - begin
            ms, out = timed(fast, fn_args, args.repeats)
            ref = ref_norm if name.startswith("norm") else ref_rot
            rows[name] = {"ms": ms, "compile_s": compile_s, **compare(ref, out)}
        try:
            from liger_kernel.ops.rms_norm import LigerRMSNormFunction

            def liger_norm(t):
                return LigerRMSNormFunction.apply(t, weight, eps, 0.0, "llama", False)

            from altcap.models.fused_vision_rotary import liger_rotary

            for name, fn, fn_args, ref in (
                ("norm_liger", liger_norm, (x,), ref_norm),
                ("rotary_liger_altcap", liger_rotary(), (q, k, cos, sin), ref_rot),  # what altcap runs
            ):
                ms, out = timed(fn, fn_args, args.repeats)
                rows[name] = {"ms": ms, **compare(ref, out)}
        except Exception as err:  # liger-kernel missing or no triton (CPU)
            rows["liger"] = {"error": f"{type(err).__name__}: {err}"}
    for name, row in rows.items():
        print(name, row)
    write_report(Path(args.out), {"settings": vars(args), "device": str(device), "results": rows})


if __name__ == "__main__":
    main()
