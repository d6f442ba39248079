"""Attention of one beam-search decode step, per SDPA backend, at BLIP-2 Flan-T5-XL's shapes.

The session-5 profile put 653 ms of a 3-beam `generate` on 512 images (2.86 s of kernels) into
cuDNN's attention kernel, which tiles queries by 64 rows while a decode step has one. This probe
times each backend on exactly those shapes before any of them goes into `altcap caption`:
self-attention (one query over t cached positions, T5's position bias as an additive mask) and
cross-attention (one query over the 46 encoder positions), plus cross-attention with the 3 beams
of an image sharing one copy of its keys and values (3 queries per image instead of 1).

  python -m benchmarks.decode_attention                 # GPU: every backend, the real shapes
  python -m benchmarks.decode_attention --tiny          # CPU smoke run (a test runs it)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.common import RESULTS_DIR, time_median_s, utc_stamp, write_report

BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def attention_cases(images: int, beams: int, heads: int, head_dim: int, encoder_len: int, steps: list[int]):
    """(name, query shape, key/value shape, mask shape or None) of one decoder layer's step."""
    rows = images * beams
    cases = [
        (f"self, {t} cached", (rows, heads, 1, head_dim), (rows, heads, t, head_dim), (rows, heads, 1, t))
        for t in steps
    ]
    cases.append(
        ("cross, per beam", (rows, heads, 1, head_dim), (rows, heads, encoder_len, head_dim), None)
    )
    cases.append(
        (
            "cross, beams share keys",
            (images, heads, beams, head_dim),
            (images, heads, encoder_len, head_dim),
            None,
        )
    )
    return cases


def time_backends(
    tensors: tuple[torch.Tensor, ...],
    mask: torch.Tensor | None,
    backends: list[str],
    device: str,
    repeats: int,
) -> dict[str, Any]:
    """Median time and error against fp32 of one case under each backend (or why it refused)."""
    q, k, v = tensors
    attention = torch.nn.functional.scaled_dot_product_attention
    reference = attention(q.float(), k.float(), v.float(), None if mask is None else mask.float(), scale=1.0)
    row: dict[str, Any] = {}
    for backend in backends:

        def call(backend: str = backend) -> torch.Tensor:
            with sdpa_kernel([BACKENDS[backend]]):
                return attention(q, k, v, mask, scale=1.0)

        try:
            out = call()
        except RuntimeError as err:  # the backend does not take this case (e.g. flash: no mask)
            row[backend] = {"error": str(err).splitlines()[0][:200]}
            continue
        row[backend] = {
            "median_ms": 1e3 * time_median_s(call, repeats, device),
            "max_abs_error_vs_fp32": (out.float() - reference).abs().max().item(),
        }
    return row


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Median time of each case under each backend; a backend that refuses a case says why."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    backends = args.backends or (list(BACKENDS) if device == "cuda" else ["math"])
    generator = torch.Generator(device).manual_seed(0)

    def random(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    results: dict[str, Any] = {}
    cases = attention_cases(args.images, args.beams, args.heads, args.head_dim, args.encoder_len, args.steps)
    for name, q_shape, kv_shape, mask_shape in cases:
        tensors = (random(q_shape), random(kv_shape), random(kv_shape))
        mask = None if mask_shape is None else random(mask_shape)
        results[name] = time_backends(tensors, mask, backends, device, args.repeats)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    return results


def main(argv: list[str] | None = None) -> Path:
    """Run every case and write the JSON report; returns its path."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="small shapes (CPU smoke run)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--heads", type=int, default=32, help="Flan-T5-XL: 32 heads of 64")
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--encoder-len", type=int, default=46, help="32 query tokens + the 14-token prompt")
    parser.add_argument("--steps", type=lambda text: [int(t) for t in text.split(",")], default=[8, 30])
    parser.add_argument("--backends", type=lambda text: text.split(","), default=None)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.tiny:
        args.images, args.heads, args.head_dim, args.encoder_len, args.repeats = 4, 2, 8, 6, 3
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "settings": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "note": "one decoder layer's attention of one decode step; T5 has 24 decoder layers, "
        "each with a self- and a cross-attention, and a caption takes 30 steps here",
        "results": measure(args),
    }
    kind = "tiny" if args.tiny else "blip2-flan-t5-xl"
    out = write_report(args.out or RESULTS_DIR / f"decode_attention-{kind}-{utc_stamp()}.json", report)
    print(out)
    return out


if __name__ == "__main__":
    main()
