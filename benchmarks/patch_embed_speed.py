"""Vision patch embedding: `nn.Conv3d` (stride == kernel, as transformers runs Qwen-VL's) against
altcap's `linear_patch_embeds` swap (`models/patch_linear.py`), same weights, same patches.

Qwen2.5-VL shapes by default: 14 px patches x 2 frames x 3 channels -> 1,280 channels; 256 images
of 448 px = 262,144 patches. Prints and writes median seconds per call for both, the ratio and the
largest difference between their outputs.

    PYTHONPATH=src python -m benchmarks.patch_embed_speed --out /tmp/patch.json          # GPU
    PYTHONPATH=src python -m benchmarks.patch_embed_speed --patches 4096 --dtype float32  # CPU
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from altcap.models.patch_linear import linear_patch_embeds
from benchmarks.common import RESULTS_DIR, compute_ratios, time_median_s, utc_stamp, write_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--patches", type=int, default=262_144, help="patches per call (256 x 1,024)")
    parser.add_argument("--channels", type=int, default=1280, help="embedding width")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Time both forms of the patch embedding and write the report; returns its path."""
    args = parse_args(argv)
    device, dtype = "cuda" if torch.cuda.is_available() else "cpu", getattr(torch, args.dtype)
    torch.manual_seed(0)
    kernel = (2, 14, 14)
    conv = nn.Conv3d(3, args.channels, kernel_size=kernel, stride=kernel, bias=False).to(device, dtype)
    patches = torch.randn(args.patches, 3, *kernel, device=device, dtype=dtype)
    with torch.inference_mode():
        seconds = {"conv3d": time_median_s(lambda: conv(patches), args.repeats, device)}
        expected = conv(patches).flatten(1)
        linear_patch_embeds(conv)
        seconds["linear"] = time_median_s(lambda: conv(patches), args.repeats, device)
        difference = (conv(patches).flatten(1).float() - expected.float()).abs().max().item()
    speedup = compute_ratios({name: 1 / s for name, s in seconds.items()}, "conv3d")["linear"]
    report = {
        "benchmark": "patch_embed_speed",
        "settings": vars(args) | {"out": str(args.out) if args.out else None, "device": device},
        "seconds_per_call": seconds,
        "linear_over_conv3d_speedup": speedup,
        "max_abs_difference": difference,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
    }
    out = args.out or RESULTS_DIR / f"patch-embed-speed-{utc_stamp()}.json"
    write_report(out, report)
    print(
        f"conv3d {seconds['conv3d'] * 1e3:.2f} ms, linear {seconds['linear'] * 1e3:.2f} ms per call: "
        f"{speedup:.1f}x; max |difference| {difference:.3g}; wrote {out}"
    )
    return out


if __name__ == "__main__":
    main()
