"""Captioning throughput sweep: per-image loop (a), batched `generate` (b), altcap's path (c).

Same model, images and decoding in every mode; min_new_tokens = max_new_tokens so every caption
costs the same steps. Per beam width: (b) at each --direct-batch-sizes and (c) (`caption_items`,
the code under `altcap caption`) at each --altcap-runs SETTING:BATCH get an untimed warm-up batch
(compiles included) and a timed pass over --num-images; the best (b) and (c) get --repeats passes
and the ratio of their medians is the figure of merit (issue #13: >= 2x). (a) runs on
--per-image-images (its median is the single-image latency). A greedy check compares (b)'s and
(c)'s token ids on one batch. Writes JSON and a captions/s-vs-batch-size PNG to benchmarks/results/.

    PYTHONPATH=src python benchmarks/caption_throughput.py --random-arch blip2-flan-t5-xl  # GPU

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
import json
import platform
import statistics
import sys
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared builder beside this script
from random_archs import ARCHS, build_random_arch

FLICKR8K_IMAGES = Path("/work/shared/data/flickr8k/Images")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ALTCAP_SETTINGS = {  # (c)'s settings: GenerationConfig speed fields
    "dynamic": {},
    "static": {"cache_implementation": "static"},
    "static-eager": {"cache_implementation": "static", "disable_compile": True},
    "graphs": {"cuda_graphs": True},
}


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


def synchronize(device: Any) -> None:
    # CUDA kernels run asynchronously; without a sync the timer stops before the work is done.
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def read_peak_memory_gb(device: Any, reset: bool = False) -> float | None:
    """Peak GPU memory since the last reset (None on CPU); `reset` starts a new window."""
    if torch.device(device).type != "cuda":
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    return torch.cuda.max_memory_allocated(torch.device(device)) / 2**30


def time_direct(loaded: tuple, paths: list[Path], batch_size: int, kwargs: dict) -> dict:
    """What a notebook does: load images, build inputs, `generate` in plain batches, one after another."""
    _, model, processor, family = loaded
    read_peak_memory_gb(model.device, reset=True)
    latencies = []
    for start in range(0, len(paths), batch_size):
        began = time.perf_counter()
        images = [load_image_rgb(p) for p in paths[start : start + batch_size]]
        inputs = move_to_device(family.build_inputs(processor, images), model.device, model.dtype)
        with torch.inference_mode():
            family.generate(model, processor, inputs, kwargs)
        synchronize(model.device)
        latencies.append(time.perf_counter() - began)
    peak_gb = read_peak_memory_gb(model.device)
    return {"seconds": sum(latencies), "latencies_s": latencies, "peak_gpu_gb": peak_gb}


def time_altcap(loaded: tuple, paths: list[Path], cfg: CaptionConfig, ordered: bool = True) -> dict:
    """altcap's own path: throughput ordering, worker prefetch, JSONL append + fsync per batch."""
    _, model, processor, family = loaded
    read_peak_memory_gb(model.device, reset=True)
    began = time.perf_counter()
    items = [CaptionItem(p.name, p) for p in paths]
    items = order_for_throughput(items) if ordered else items
    written = caption_items(model, processor, family, items, cfg, progress=False)
    synchronize(model.device)
    assert written == len(paths)
    return {"seconds": time.perf_counter() - began, "peak_gpu_gb": read_peak_memory_gb(model.device)}


class Sweep:
    """Runs every measurement of one benchmark run, printing progress as it goes."""

    def __init__(self, args: argparse.Namespace, loaded: tuple, paths: list[Path], scratch: Path):
        self.args, self.loaded, self.paths, self.scratch = args, loaded, paths, scratch
        self.started = time.perf_counter()
        self.outputs = 0

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.0f} s] {message}", flush=True)

    def generation(self, beams: int, setting: str = "dynamic") -> GenerationConfig:
        n, speed = self.args.max_new_tokens, ALTCAP_SETTINGS[setting]
        return GenerationConfig(num_beams=beams, max_new_tokens=n, min_new_tokens=n, **speed)

    def caption_config(self, beams: int, setting: str, batch_size: int) -> CaptionConfig:
        self.outputs += 1  # a fresh file each pass, so nothing is skipped as already captioned
        return CaptionConfig(
            model=self.loaded[0],
            images=self.scratch,
            out=self.scratch / f"captions-{self.outputs}.jsonl",
            generation=self.generation(beams, setting),
            batch_size=batch_size,
            num_workers=self.args.num_workers,
        )

    def measure(self, beams: int, setting: str | None, batch_size: int) -> dict:
        """One timed pass over every image after one untimed batch (warm-up, compiles); setting
        None = (b) batched generate, else (c) altcap with that setting."""
        if setting is None:
            self.release_graphs()  # memory held by (c)'s CUDA graphs would shrink (b)'s batches
            kwargs = self.generation(beams).generate_kwargs()
            time_direct(self.loaded, self.paths[:batch_size], batch_size, kwargs)
            return time_direct(self.loaded, self.paths, batch_size, kwargs)
        time_altcap(self.loaded, self.paths[:batch_size], self.caption_config(beams, setting, batch_size))
        timed = time_altcap(self.loaded, self.paths, self.caption_config(beams, setting, batch_size))
        model = self.loaded[1]
        decoder = getattr(getattr(model, "language_model", model), "_altcap_graphed_decoder", None)
        if decoder is not None:
            timed["graphs"] = len(decoder.graphs)
        return timed

    def release_graphs(self) -> None:
        from altcap.models.graphed_decoding import release_graphed_decoder

        model = self.loaded[1]
        release_graphed_decoder(getattr(model, "language_model", model))

    def run_per_image(self, beams: int) -> dict:
        subset = self.paths[: self.args.per_image_images]
        kwargs = self.generation(beams).generate_kwargs()
        time_direct(self.loaded, subset[:1], 1, kwargs)
        timed = time_direct(self.loaded, subset, 1, kwargs)
        latency_s = statistics.median(timed["latencies_s"])
        return {**summarize([timed], len(subset)), "single_image_latency_s": latency_s}

    def sweep_beams(self, beams: int) -> dict[str, Any]:
        """(a), then (b) at each batch size and (c) at each setting, then repeats of both winners."""
        self.log(f"beams={beams}: (a) per-image loop on {self.args.per_image_images} images")
        result: dict[str, Any] = {"per_image_loop": self.run_per_image(beams), "failed": []}
        runs: dict[tuple, list[dict]] = {}
        keys = [(None, size) for size in self.args.direct_batch_sizes] + list(self.args.altcap_runs)
        for setting, size in keys:
            mode = f"(c) altcap {setting}" if setting else "(b) batched generate"
            try:
                runs[setting, size] = [self.measure(beams, setting, size)]
            except (RuntimeError, ValueError) as err:  # e.g. out of memory: keep the rest of the GPU run
                result["failed"].append({"setting": setting, "batch_size": size, "error": str(err)[:800]})
                self.log(f"beams={beams}: {mode} batch {size} FAILED: {str(err)[:200]}")
                continue
            self.log(f"beams={beams}: {mode} batch {size}: {self.rate(runs[setting, size]):.1f} captions/s")
        direct = [key for key in keys if key[0] is None and key in runs]
        altcap = [key for key in keys if key[0] is not None and key in runs]
        for mode, candidates in (("batched", direct), ("altcap", altcap)):
            best = max(candidates, key=lambda key: self.rate(runs[key]))
            runs[best] += [self.measure(beams, *best) for _ in range(self.args.repeats - 1)]
            result[f"best_{mode}"] = dict(
                setting=best[0], batch_size=best[1], captions_per_s=self.rate(runs[best])
            )
        n = len(self.paths)
        rows = [dict(setting=k[0], batch_size=k[1], **summarize(runs[k], n)) for k in direct + altcap]
        result["batched_generate"], result["altcap"] = rows[: len(direct)], rows[len(direct) :]
        ratio = result["best_altcap"]["captions_per_s"] / result["best_batched"]["captions_per_s"]
        result["altcap_over_batched"] = ratio
        self.log(f"beams={beams}: best (c) / best (b) = {result['altcap_over_batched']:.2f}x")
        return result

    def rate(self, runs: list[dict]) -> float:
        return len(self.paths) / statistics.median(r["seconds"] for r in runs)

    def generate_ids(self, inputs: dict, setting: str) -> torch.Tensor:
        """Greedy ids with (c)'s setting; CUDA graphs go through the family's own ids path."""
        _, model, processor, _ = self.loaded
        kwargs = self.generation(1, setting).generate_kwargs()
        if kwargs.get("cuda_graphs"):
            from altcap.models.query_tokens import generate_sequences

            return generate_sequences(model, processor, inputs, kwargs)
        return model.generate(**inputs, **kwargs)

    def check_greedy_ids(self, setting: str, batch_size: int) -> dict[str, Any]:
        """(b)'s and (c)'s greedy token ids on the first batch, and the captions `caption_items` writes."""
        _, model, processor, family = self.loaded
        paths = self.paths[:batch_size]
        inputs = family.build_inputs(processor, [load_image_rgb(p) for p in paths])
        inputs = move_to_device(inputs, model.device, model.dtype)
        with torch.inference_mode():
            ids = [self.generate_ids(inputs, name) for name in ("dynamic", setting)]
            expected = family.generate(model, processor, inputs, self.generation(1).generate_kwargs())
        same_shape = ids[0].shape == ids[1].shape
        equal_rows = int((ids[0] == ids[1]).all(dim=1).sum()) if same_shape else 0
        cfg = self.caption_config(1, setting, batch_size)
        time_altcap(self.loaded, paths, cfg, ordered=False)
        written = [json.loads(line)["caption"] for line in cfg.out.read_text(encoding="utf-8").splitlines()]
        same_captions = sum(a == b for a, b in zip(written, expected, strict=True))
        return {
            "setting": setting,
            "batch_size": len(paths),
            "rows_with_equal_ids": equal_rows,
            "captions_equal_to_batched": same_captions,
            "passed": equal_rows == len(paths) == same_captions,
        }


def summarize(runs: list[dict], num_images: int) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    peaks = [r["peak_gpu_gb"] for r in runs if r.get("peak_gpu_gb") is not None]
    return {
        "images": num_images,
        "captions_per_s": num_images / statistics.median(seconds),
        "seconds_median": statistics.median(seconds),
        "seconds_min": min(seconds),
        "seconds_per_repeat": seconds,
        "peak_gpu_gb": max(peaks) if peaks else None,
        **({"graphs": runs[-1]["graphs"]} if "graphs" in runs[-1] else {}),
    }


def describe_hardware(device: Any) -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else None
    return {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "gpu": gpu}


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
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model_id or args.random_arch or f"tiny-{args.tiny_family}-{args.tiny_variant}",
        "hardware": describe_hardware(model.device),
        "versions": package_versions(),
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
    args = parse_args(argv)
    report = run(args)
    print_table(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = args.out_dir / f"caption_throughput-{Path(report['model']).name}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    plot_sweep(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png').name}")
    return out


if __name__ == "__main__":
    main()
