"""Start-up of the embedded default: `altcap caption --model-id altcap-mini` on one image, from the
command's start to its first caption on disk, with an empty converted-model cache (cold: the
packaged weights are converted and stored) and again with it filled (warm). Target: warm < 5 s on
2 cores (issue #27 item 17).

Run: python -m benchmarks.startup [--repeats 3] [--image PATH]
Writes benchmarks/results/startup.json (hardware, versions, cold s, warm s, ratio; also the CPU
seconds of each run, which other work on a shared box changes far less than wall time, the load
average before each run, `altcap --help`'s wall time, and where a warm start's time goes, phase by
phase, including the same caption made a second time in the same process: what the first one pays
beyond it is one-time cost). altcap's modules are byte-compiled first, as `pip install` does, so a
run never times Python compiling altcap's source (PYTHONDONTWRITEBYTECODE is set on the dev boxes).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_report

RESULTS = Path(__file__).parent / "results" / "startup.json"
SAMPLE = Path(__file__).resolve().parents[1] / "src" / "altcap" / "sample"


def find_sample_image() -> Path:
    """One photo of the embedded sample (any jpg under src/altcap/sample)."""
    return next(iter(sorted(SAMPLE.rglob("*.jpg"))))


def time_first_caption(image: Path, cache: Path, work: Path, threads: int) -> dict:
    """Run `altcap caption` on a folder holding `image`; seconds until its caption is on disk.

    Args:
        image: the photo to caption.
        cache: the converted-model cache folder for this run (ALTCAP_MODEL_CACHE).
        work: an empty folder for the input folder and the captions file.
        threads: torch/OpenMP threads of the command (its CPU seconds count spin-waits otherwise).

    Returns:
        {"first_caption_s", "exit_s", "caption"}.
    """
    images, out = work / "images", work / "captions.jsonl"
    images.mkdir(parents=True)
    (images / image.name).write_bytes(image.read_bytes())
    env = {**os.environ, "ALTCAP_MODEL_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "altcap.cli", "caption", "--model-id", "altcap-mini",
               "--images", str(images), "--out", str(out)]
    cpu_before, load_before = _children_cpu_s(), os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while process.poll() is None:
        if first is None and out.is_file() and out.stat().st_size > 0:
            first = time.perf_counter() - started
        time.sleep(0.02)
    exit_s = time.perf_counter() - started
    stderr = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"altcap caption failed ({process.returncode}): {stderr[-2000:]}")
    caption = json.loads(out.read_text(encoding="utf-8").splitlines()[0])["caption"]
    return {"first_caption_s": round(first or exit_s, 2), "exit_s": round(exit_s, 2),
            "cpu_s": round(_children_cpu_s() - cpu_before, 2),
            "load_average_1m_before": round(load_before, 2), "caption": caption}


# The warm start's steps, each timed in CPU and wall seconds of one process (imports are
# single-threaded; the captions run on `threads`): what is left to cut once the conversion is cached.
PHASES_SCRIPT = """
import json, resource, sys, time
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
marks = [("start", cpu(), time.perf_counter())]
def mark(name):
    marks.append((name, cpu(), time.perf_counter()))
import gc, os
import altcap.cli
gc.set_threshold(*getattr(altcap.cli, "GC_THRESHOLDS", gc.get_threshold()))  # as `altcap` runs
if getattr(altcap.cli, "OMP_WAIT_POLICY", None):
    os.environ.setdefault("OMP_WAIT_POLICY", altcap.cli.OMP_WAIT_POLICY)
import altcap.infer.commands  # what `altcap caption` itself imports before it runs
mark("python + altcap.cli and caption command imports")
import torch
mark("import torch")
import transformers.models.llama.modeling_llama
mark("import transformers' Llama stack")
from altcap.data.images import load_image_rgb
from altcap.infer.config import CaptionConfig
from altcap.models.loading import ModelConfig, load_model
import altcap.models.families.altcap_mini
mark("import altcap's caption and model code")
model, processor, family = load_model(ModelConfig(model_id="altcap-mini", device="cpu"))
mark("load the cached copy (weights, tokenizer)")
generation = CaptionConfig(images=sys.argv[1]).generation.generate_kwargs()
inputs = family.build_inputs(processor, [load_image_rgb(sys.argv[2])], [None])
mark("read the image, build the inputs")
forwards = []
# The decoder, not the LM: the prompt's forward runs through it alone (models/mini_decoding.py).
model.language_model.get_decoder().register_forward_pre_hook(lambda *_: forwards.append(time.perf_counter()))
captions = []
for name in ("first caption (default generation settings)", "the same caption again, same process"):
    forwards.clear()
    with torch.inference_mode():
        captions.append(family.generate(model, processor, inputs, generation))
    mark(name)
    prefill_s = forwards[1] - forwards[0]  # the prompt's forward pass (once an image since session 12)
steps = {name: {"cpu_s": round(c - pc, 2), "wall_s": round(w - pw, 2)}
         for (name, c, w), (_, pc, pw) in zip(marks[1:], marks[:-1])}
print(json.dumps({"phases": steps, "decode_steps": len(forwards) - 1, "prefill_wall_s": round(prefill_s, 2),
                  "same_caption_twice": captions[0] == captions[1]}))
"""


def measure_warm_phases(image: Path, cache: Path, threads: int) -> dict:
    """CPU and wall seconds of each step of a warm start, in one process (the cache is filled).

    Args:
        image: the photo captioned.
        cache: a filled converted-model cache (ALTCAP_MODEL_CACHE).
        threads: torch/OpenMP threads.

    Returns:
        {"phases": step name -> {"cpu_s", "wall_s"} in order, "decode_steps", "prefill_wall_s" (of the
        second caption), "same_caption_twice"}.
    """
    env = {**os.environ, "ALTCAP_MODEL_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", PHASES_SCRIPT, str(image.parent), str(image)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_help() -> float:
    """Wall seconds of `altcap --help` (Python start, the CLI's imports, every command's options)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "altcap.cli", "--help"], capture_output=True, check=True)
    return round(time.perf_counter() - started, 2)


def compile_altcap() -> None:
    """Byte-compile the altcap package being timed, as `pip install` does for an installed one."""
    import altcap

    compileall.compile_dir(Path(altcap.__file__).parent, quiet=1)


def _children_cpu_s() -> float:
    # CPU seconds (user + system) of finished child processes: unlike wall time, barely changed by
    # other work sharing the cores, so it tells what a start costs on a busy box.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_phases(runs: list[dict]) -> dict:
    """Per phase, the median CPU and wall seconds over runs (phase order kept)."""
    return {name: {unit: statistics.median(run[name][unit] for run in runs) for unit in ("cpu_s", "wall_s")}
            for name in runs[0]}


def run_benchmark(image: Path, repeats: int, threads: int) -> dict:
    """Cold runs (each with a fresh empty cache), warm runs (cache filled) and warm phase profiles,
    `repeats` of each, medians reported."""
    cold, warm, profiles = [], [], []
    compile_altcap()
    help_s = statistics.median(time_help() for _ in range(repeats))
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(repeats):
            cache = Path(tmp) / f"cache-{index}"
            cold.append(time_first_caption(image, cache, Path(tmp) / f"cold-{index}", threads))
            warm.append(time_first_caption(image, cache, Path(tmp) / f"warm-{index}", threads))
            profiles.append(measure_warm_phases(image, cache, threads))
    cold_s = statistics.median(r["first_caption_s"] for r in cold)
    warm_s = statistics.median(r["first_caption_s"] for r in warm)
    return {
        "benchmark": "altcap caption --model-id altcap-mini, one image: seconds to the first caption",
        "image": image.name,
        "threads": threads,
        "cold_s": cold_s,
        "warm_s": warm_s,
        "ratio": round(cold_s / warm_s, 2),
        "cold_cpu_s": statistics.median(r["cpu_s"] for r in cold),
        "warm_cpu_s": statistics.median(r["cpu_s"] for r in warm),
        "help_s": help_s,
        "same_caption": all(c["caption"] == w["caption"] for c, w in zip(cold, warm, strict=True)),
        "warm_phases": median_phases([profile["phases"] for profile in profiles]),
        "decode_steps": profiles[0]["decode_steps"],
        "prefill_wall_s": statistics.median(profile["prefill_wall_s"] for profile in profiles),
        "same_caption_twice": all(profile["same_caption_twice"] for profile in profiles),
        "runs": {"cold": cold, "warm": warm, "warm_phases": profiles},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold/warm pairs to run (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the timed command")
    parser.add_argument("--image", type=Path, default=None, help="photo to caption (default: a sample one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="report path")
    args = parser.parse_args()
    result = run_benchmark(args.image or find_sample_image(), args.repeats, args.threads)
    write_report(args.out, result)
    shown = ("cold_s", "warm_s", "ratio", "cold_cpu_s", "warm_cpu_s", "help_s", "same_caption", "warm_phases",
             "decode_steps", "prefill_wall_s", "same_caption_twice")
    print(json.dumps({k: result[k] for k in shown}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
