"""The captioning sweep's measurements: (b) batched `generate`, (c) altcap's `caption_items`,
the per-image loop (a), and the greedy token-id check between (b) and (c).

Used by `python -m benchmarks.caption_throughput`, which holds the options and writes the report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from altcap.data.images import load_image_rgb
from altcap.infer.caption import CaptionItem, caption_items, order_for_throughput
from altcap.infer.config import CaptionConfig, GenerationConfig
from altcap.models.text_inputs import move_to_device
from benchmarks.common import synchronize

ALTCAP_SETTINGS = {  # (c)'s settings: GenerationConfig speed fields
    "dynamic": {},
    "static": {"cache_implementation": "static"},
    "static-eager": {"cache_implementation": "static", "disable_compile": True},
    "graphs": {"cuda_graphs": True},
}


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
