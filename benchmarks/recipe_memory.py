"""GPU memory of each shipped chat-VLM recipe, measured: `run_train` (what `altcap train` runs) on
the recipe's full-size architecture with random weights, at the recipe's own batch size, length,
pixel budget, precision, LoRA and gradient-checkpointing settings, for a few optimizer steps.

Images are random JPEGs larger than every recipe's pixel budget (1024 x 768), so each processor
scales them down to its cap: the most image tokens the recipe allows, the worst case for memory.
Captions are 20-30 words. Each recipe runs in its own process (CUDA peaks are per process; one
out-of-memory leaves the others' figures). Reported per recipe: peak allocated and reserved GB
(whole run: load, cache fill and steps) and the train log's own peak, samples/s after the first
optimizer step, and the card.

    PYTHONPATH=src python -m benchmarks.recipe_memory --models-root /root/chatbench   # GPU
    PYTHONPATH=src python -m benchmarks.recipe_memory --tiny --steps 1                # CPU smoke
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.chat_archs import CHAT_ARCHS
from benchmarks.chat_bench import (
    card_slug,
    ensure_model,
    keep_earlier_peaks,
    read_gpu_peaks,
    run_child,
    summarize_log,
    write_json,
    write_train_data,
)
from benchmarks.common import RESULTS_DIR, write_report

IMAGE_SIZE = (1024, 768)


def find_recipe(name: str) -> Path:
    """The shipped recipe YAML of architecture `name` (`src/altcap/configs/<name>-lora.yaml`)."""
    import altcap

    path = Path(altcap.__file__).parent / "configs" / f"{name}-lora.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no shipped recipe for {name}; recipes: {sorted(path.parent.glob('*.yaml'))}"
        )
    return path


def build_sets(model: Path, manifest: Path, out: Path, steps: int, tiny: bool) -> list[str]:
    """`--set` overrides: the benchmark's model, data and run length; the recipe keeps the rest."""
    sets = [
        f"model.model_id={model}",
        f"data.manifest={manifest}",
        f"output_dir={out}",
        f"max_steps={steps}",
        "epochs=1000",
        "data.val_split=null",
        "log_every_n_steps=1",
        "save_every_n_steps=1000000",
        "keep_best=false",
        "report_to=none",
    ]
    # The CPU smoke run cannot hold a batch of 8 full-resolution images in reasonable time.
    return [*sets, "batch_size=2", "grad_accum_steps=1", "precision=fp32"] if tiny else sets


def measure_recipe(name: str, models_root: Path, work: Path, steps: int, tiny: bool) -> dict[str, Any]:
    """One recipe in this process: build (or reuse) the model, then `run_train` for `steps` steps.

    Args:
        name: one of CHAT_ARCHS.
        models_root: folder of the random-weight models (`<root>/<name>`).
        work: scratch folder (data, run output).
        steps: optimizer steps.
        tiny: tiny model sizes (CPU).

    Returns:
        The recipe's settings and its measured peaks and rate.
    """
    import torch

    from altcap.config import load_config
    from altcap.train.config import TrainConfig
    from altcap.train.logs import read_log_rows
    from altcap.train.run import run_train

    recipe = find_recipe(name)
    folder, build_s = ensure_model(name, models_root / name, tiny)
    probe = load_config(TrainConfig, recipe, {}, build_sets(folder, Path("x"), work, steps, tiny))
    per_step = probe.batch_size * probe.grad_accum_steps
    manifest = write_train_data(work / "data", per_step * steps, IMAGE_SIZE)
    cfg = load_config(TrainConfig, recipe, {}, build_sets(folder, manifest, work / "run", steps, tiny))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    with keep_earlier_peaks() as earlier:
        run_train(cfg)
    wall_s = time.perf_counter() - began
    rows = read_log_rows(cfg.output_dir / "train_log.jsonl")
    return {
        "recipe": str(recipe.name),
        "settings": {
            "batch_size": cfg.batch_size,
            "grad_accum_steps": cfg.grad_accum_steps,
            "precision": cfg.precision,
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "max_length": cfg.model.max_length,
            "max_image_pixels": cfg.model.max_image_pixels,
            "lora_r": cfg.lora.r,
            "lora_alpha": cfg.lora.alpha,
            "image_size": list(IMAGE_SIZE),
            "optimizer_steps": steps,
        },
        **read_gpu_peaks(),
        "peak_allocated_before_resets_gb": max(earlier, default=None),
        **summarize_log(rows, skip=1),  # rows are optimizer steps; the first warms up
        "model_build_s": round(build_s, 1),
        "run_train_wall_s": round(wall_s, 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", default=",".join(CHAT_ARCHS), help="Comma-separated architecture names.")
    parser.add_argument("--steps", type=int, default=3, help="Optimizer steps per recipe.")
    parser.add_argument("--tiny", action="store_true", help="Tiny sizes on the CPU (smoke test).")
    parser.add_argument(
        "--models-root", type=Path, default=None, help="Random-weight models (built if missing)."
    )
    parser.add_argument("--timeout-s", type=float, default=240, help="Per-recipe process limit.")
    parser.add_argument(
        "--out", type=Path, default=None, help="Report JSON (default: results/recipe-memory-<card>.json)."
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: measure this recipe
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)  # child's output
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Measure every requested recipe (one child process each) and write the report; returns its path."""
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="recipe-memory-"))
    models_root = args.models_root or scratch / "models"
    if args.one:
        write_json(args.result, measure_recipe(args.one, models_root, scratch, args.steps, args.tiny))
        return args.result
    out = args.out or RESULTS_DIR / f"recipe-memory-{card_slug()}.json"
    report: dict[str, Any] = {
        "benchmark": "recipe_memory",
        "what": "altcap run_train on each shipped recipe's full-size architecture (random weights) "
        "at the recipe's settings; peaks are this process's torch.cuda max_memory_allocated/reserved",
        "tiny": args.tiny,
        "recipes": {},
    }
    for name in args.recipes.split(","):
        child = ["--one", name, "--steps", str(args.steps), "--models-root", str(models_root)]
        child += ["--tiny"] if args.tiny else []
        result = run_child("benchmarks.recipe_memory", child, scratch / f"{name}.json", args.timeout_s)
        report["recipes"][name] = result
        print(f"{name}: {summarize_line(result)}", flush=True)
        write_report(out, report)  # after each recipe, so a later failure keeps the earlier figures
    print(out)
    return out


def summarize_line(result: dict[str, Any]) -> str:
    """One progress line per recipe."""
    if "error" in result:
        return f"FAILED ({result['error']})"
    return (
        f"peak {result['peak_allocated_gb']} GB allocated / {result['peak_reserved_gb']} GB reserved, "
        f"{result['samples_per_s']} samples/s, {result['run_train_wall_s']} s"
    )


if __name__ == "__main__":
    main()
