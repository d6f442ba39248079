"""Captioning throughput sweep: per-image loop (a), batched `generate` (b), altcap's path (c).

Same model, images and decoding in every mode; min_new_tokens = max_new_tokens so every caption
costs the same steps. Per beam width: (b) at each --direct-batch-sizes and (c) (`caption_items`,
the code under `altcap caption`) at each --altcap-runs SETTING:BATCH get an untimed warm-up batch
(compiles included) and a timed pass over --num-images; the best (b) and (c) get --repeats passes
and the ratio of their medians is the figure of merit (issue #13: >= 2x). (a) runs on
--per-image-images (its median is the single-image latency). A greedy check compares (b)'s and
(c)'s token ids on one batch (the measurements: `caption_sweep.py`). Writes JSON and a
captions/s-vs-batch-size PNG to benchmarks/results/.

    PYTHONPATH=src python -m benchmarks.caption_throughput --random-arch blip2-flan-t5-xl  # GPU

Where the time goes, read from transformers 5.17/5.24's source (to confirm with the profiler):
- `Blip2ForConditionalGeneration.generate` runs ViT-g, Q-Former and the T5 encoder once per image,
  not per beam; each beam then computes the same cross-attention K/V at step 1, and every beam step
  `index_select`s the whole cache, cross-attention K/V included. OPT prefills once per beam.
- The issue's H100 figures (45.5 captions/s at batch 64, 111 at 256; 3 beams, 30 tokens) mean
  ~45-75 ms per decoding step, nearly flat in batch size and far above the step's matmuls (~2.5
  TFLOP at 256 x 3 beams: a few ms). So per-step Python and kernel-launch overhead of T5-XL's
  24-layer decoder (RMS norm, position bias: several small ops each) dominates; a static cache lets
  transformers torch.compile the step with CUDA graphs, which removes exactly that, and bigger
  batches amortise it. ViT-g (~0.13 PFLOP per 256 images) is a smaller share.
- Image preprocessing takes ~2.4 ms per 224 px image on one core (~0.6 s per 256): altcap runs it
  in DataLoader worker processes (`num_workers`), off the generate loop's GIL.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from altcap.models.loading import ModelConfig, load_model
from altcap.models.tiny import build_tiny_model
from benchmarks.caption_sweep import ALTCAP_SETTINGS, Sweep
from benchmarks.common import FLICKR8K, RESULTS_DIR, describe_hardware, utc_now, utc_stamp, write_report
from benchmarks.random_archs import ARCHS, build_random_arch

FLICKR8K_IMAGES = FLICKR8K / "Images"


def parse_int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_altcap_runs(text: str) -> list[tuple[str, int]]:
    """'static:256,dynamic:128' -> [("static", 256), ("dynamic", 128)]; unknown names are an error."""
    runs = []
    for part in text.split(","):
        name, _, size = part.partition(":")
        if name not in ALTCAP_SETTINGS or not size.isdigit():
            raise argparse.ArgumentTypeError(
                f"--altcap-runs item {part!r}: use SETTING:BATCH, SETTING one of {', '.join(ALTCAP_SETTINGS)}"
            )
        runs.append((name, int(size)))
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true", help="Build a tiny random model (CPU smoke run).")
    source.add_argument("--model-id", help="Hub id or folder of a full-size model.")
    source.add_argument("--random-arch", choices=ARCHS, help="Random weights, real sizes.")
    parser.add_argument("--tiny-family", default="blip2", help="Family of the --tiny model.")
    parser.add_argument("--tiny-variant", default=None, help="Decoder of the --tiny model (blip2: opt, t5).")
    parser.add_argument(
        "--images", type=Path, default=None, help="Image folder (default: Flickr8k if here, else synthetic)."
    )
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument("--per-image-images", type=int, default=16, help="Images for the slow loop (a).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes of the best (b) and (c).")
    parser.add_argument("--beams", type=parse_int_list, default=[3, 1], help="Beam widths, e.g. 3,1.")
    parser.add_argument("--direct-batch-sizes", type=parse_int_list, default=[64, 128, 256, 512])
    parser.add_argument(
        "--altcap-runs",
        type=parse_altcap_runs,
        default=[("dynamic", 256), ("static", 256), ("static", 512)],
        help=f"(c) SETTING:BATCH list; settings: {', '.join(ALTCAP_SETTINGS)}.",
    )
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--num-workers", type=int, default=4, help="(c)'s batch-preparing processes.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def pick_images(folder: Path | None, count: int, scratch: Path) -> list[Path]:
    """`count` image paths: from the folder, else Flickr8k, else synthetic JPEGs in `scratch`."""
    folder = folder or (FLICKR8K_IMAGES if FLICKR8K_IMAGES.is_dir() else None)
    if folder is not None:
        paths = sorted(folder.glob("*.jpg"))[:count]
        if len(paths) < count:
            raise SystemExit(f"{folder}: only {len(paths)} .jpg images, --num-images asks for {count}")
        return paths
    rng = np.random.default_rng(0)
    paths = [scratch / f"synthetic{index:04d}.jpg" for index in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(path)
    return paths


def load_benchmark_model(args: argparse.Namespace, scratch: Path) -> tuple[ModelConfig, Any, Any, Any]:
    if args.random_arch:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model_id = str(build_random_arch(args.random_arch, scratch / "random", device))
    elif args.tiny:
        model_id = str(build_tiny_model(args.tiny_family, scratch / "tiny", variant=args.tiny_variant))
    else:
        model_id = args.model_id
    model_cfg = ModelConfig(model_id=model_id, device=args.device, dtype=args.dtype)
    return (model_cfg, *load_model(model_cfg))


def allow_recompiles() -> None:
    # Each (batch, beams) shape is its own compiled graph (and cross-attention cache state doubles
    # that for T5); torch's default limit of 8 would silently fall back to eager mid-sweep.
    torch._dynamo.config.recompile_limit = 64


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model, sweep every beam width, check greedy ids; returns the report."""
    allow_recompiles()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        began = time.perf_counter()
        loaded = load_benchmark_model(args, scratch)
        paths = pick_images(args.images, args.num_images, scratch)
        sweep = Sweep(args, loaded, paths, scratch)
        sweep.log(f"model ready after {time.perf_counter() - began:.0f} s; {len(paths)} images")
        by_beams = {str(beams): sweep.sweep_beams(beams) for beams in args.beams}
        greedy = by_beams.get("1", {}).get("best_altcap")
        id_check = sweep.check_greedy_ids(greedy["setting"], greedy["batch_size"]) if greedy else None
        sweep.log(f"greedy id check: {id_check}")
    _, model, _, family = loaded
    return {
        "created_at": utc_now(),
        "model": args.model_id or args.random_arch or f"tiny-{args.tiny_family}-{args.tiny_variant}",
        "hardware": {**describe_hardware(), "torch_threads": torch.get_num_threads()},
        "settings": {
            **{key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            **{"family": family.name, "dtype": str(model.dtype), "device": str(model.device)},
            "images": str(args.images or (FLICKR8K_IMAGES if FLICKR8K_IMAGES.is_dir() else "synthetic")),
            "generation": {str(b): sweep.generation(b).generate_kwargs() for b in args.beams},
        },
        "results": by_beams,
        "greedy_id_check": id_check,
        "total_seconds": time.perf_counter() - sweep.started,
    }


def print_table(report: dict[str, Any]) -> None:
    """captions/s and peak memory of every mode, beam width and batch size."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"caption throughput: {report['model']} on {report['settings']['device']}")
    for column in ("beams", "mode", "batch", "captions/s", "peak GPU GB"):
        table.add_column(column)
    for beams, result in report["results"].items():
        loop = result["per_image_loop"]
        table.add_row(beams, "(a) per-image loop", "1", f"{loop['captions_per_s']:.2f}", "")
        rows = [("(b) batched generate", r) for r in result["batched_generate"]]
        rows += [(f"(c) altcap {r['setting']}", r) for r in result["altcap"]]
        for mode, r in rows:
            peak = "" if r["peak_gpu_gb"] is None else f"{r['peak_gpu_gb']:.1f}"
            table.add_row(beams, mode, str(r["batch_size"]), f"{r['captions_per_s']:.2f}", peak)
    Console().print(table)


def plot_sweep(report: dict[str, Any], out: Path) -> None:
    """captions/s against batch size, one line per beam width and mode."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for beams, result in report["results"].items():
        lines = {"(b) batched generate": result["batched_generate"]}
        for r in result["altcap"]:
            lines.setdefault(f"(c) altcap {r['setting']}", []).append(r)
        for label, rows in lines.items():
            sizes, rates = zip(*sorted((r["batch_size"], r["captions_per_s"]) for r in rows), strict=True)
            axes.plot(sizes, rates, marker="o", label=f"{label}, {beams} beam(s)")
    axes.set(xscale="log", xlabel="batch size (images)", ylabel="captions/s")
    axes.set_title(f"{report['model']}, {report['settings']['device']}")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> Path:
    """Run the sweep, print it, write its JSON and plot; returns the JSON path."""
    args = parse_args(argv)
    report = run(args)
    print_table(report)
    out = args.out_dir / f"caption_throughput-{Path(report['model']).name}-{utc_stamp()}.json"
    write_report(out, report)
    plot_sweep(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png').name}")
    return out


if __name__ == "__main__":
    main()
