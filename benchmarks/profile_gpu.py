"""torch-profiler view of altcap's training step from cached features, and of captioning (issue #13).

`train` loads the model as `altcap train` does (`load_train_model`, LoRA r = alpha = --lora-r),
caches one batch's features (`encode_images`), frees the cached frozen modules, and profiles what
`fit` does per step: batch to device, `forward_from_features` under autocast, backward, loss sync,
clip, fused AdamW, schedule, zero_grad. `caption` profiles `family.generate` on one batch. Per step:
wall time, CUDA kernel time, GPU-busy fraction, kernel launches, top ops/kernels by self CUDA and
self CPU time; peak memory and its breakdown. CUDA fields are null on CPU.

  python benchmarks/profile_gpu.py train --tiny --steps 2 --out /tmp/p.json     # CPU smoke run
  PYTHONPATH=src python benchmarks/profile_gpu.py train --random-arch blip2-flan-t5-xl \\
    --images <flickr8k dir> --batch-size 32 --lora-r 128 --out $OUT/profile_train.json   # GPU
  PYTHONPATH=src python benchmarks/profile_gpu.py caption --random-arch blip2-flan-t5-xl \\
    --images <flickr8k dir> --batch-size 64 --out $OUT/profile_caption.json [--trace]    # GPU
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when loaded by path
from random_archs import ARCHS, build_random_arch
from train_manifests import TINY_CAPTIONS, read_flickr_captions, write_flickr_manifest, write_tiny_manifest

from altcap.config import load_config
from altcap.models.text_inputs import move_to_device
from altcap.provenance import package_versions
from altcap.train.data import load_rgb, read_split_examples

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TOP_ROWS = 25
COPY_PREFIXES = ("Memcpy", "Memset")  # device events that are copies, not kernel launches
CUDA_FIELDS = ("step_kernel_time_ms", "gpu_busy_fraction", "kernel_launches_per_step")
TABLES = ("top_ops_by_self_cuda", "top_kernels_by_self_cuda", "top_ops_by_self_cpu")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (model options as in train_throughput.py)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("mode", choices=("train", "caption"))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true", help="tiny random BLIP-2 OPT (CPU smoke run)")
    source.add_argument("--model-id", help="hub id or folder of a full-size model")
    source.add_argument("--random-arch", choices=ARCHS, help="a real architecture, random weights")
    parser.add_argument("--family", help="altcap family; default inferred")
    parser.add_argument("--images", type=Path, help="JPEG folder (or Flickr8k); default synthetic")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank and alpha (train)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps")
    parser.add_argument("--warmup-steps", type=int, default=2, help="unprofiled steps first (compiles)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile as `altcap train` does")
    parser.add_argument("--compile-mode", default="default", choices=("default", "reduce-overhead"))
    parser.add_argument("--compile-scope", default="blocks", choices=("blocks", "model"))
    parser.add_argument("--num-beams", type=int, default=3, help="caption mode")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="caption mode; = min_new_tokens")
    parser.add_argument("--cuda-graphs", action="store_true", help="caption mode: generation.cuda_graphs")
    parser.add_argument("--trace", action="store_true", help="also a gzipped Chrome trace beside --out")
    parser.add_argument("--out", type=Path, help="JSON path; default benchmarks/results/profile-*.json")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.warmup_steps + 1) < 1:
        parser.error(f"--steps {args.steps}, --batch-size {args.batch_size}: >= 1; --warmup-steps >= 0")
    if args.images is not None and not args.images.is_dir():
        parser.error(f"--images {args.images}: not a folder; give a folder of JPEGs or leave it out")
    return args


def write_manifest(args: argparse.Namespace, root: Path) -> Path:
    """A manifest of --batch-size train examples: Flickr8k, a JPEG folder (captions from its
    `captions.txt` rows `image,caption` if present, else synthetic), or synthetic images."""
    folder = args.images
    if folder is None:
        return write_tiny_manifest(root, args.batch_size)
    if (folder / "Flickr8k.token.txt").is_file():
        return write_flickr_manifest(folder, root, args.batch_size)
    paths = (sorted(folder.glob("*.jpg")) or sorted(folder.glob("Images/*.jpg")))[: args.batch_size]
    if not paths:
        raise SystemExit(f"--images {folder}: no .jpg files there or in {folder / 'Images'}")
    table = folder / "captions.txt"
    lines = table.read_text("utf-8").splitlines()[1:] if table.is_file() else []  # [0]: header
    captions = dict(reversed([line.split(",", 1) for line in lines if "," in line]))  # first one wins
    rows = [
        {"image": str(p.resolve()), "captions": [captions.get(p.name, TINY_CAPTIONS[i % 4])]}
        for i, p in enumerate(paths)
    ]
    root.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({**row, "split": "train"}) + "\n" for row in rows)
    (root / "manifest.jsonl").write_text(text, encoding="utf-8")
    return root / "manifest.jsonl"


def prepare_model_id(args: argparse.Namespace, scratch: Path) -> str:
    """The model folder or id: a tiny or random-weights model is built into `scratch`."""
    if args.tiny:
        from altcap.models.tiny import build_tiny_model

        return str(build_tiny_model("blip2", scratch / "model", variant="opt"))
    if not args.random_arch:
        return args.model_id
    flickr = args.images is not None and (args.images / "Flickr8k.token.txt").is_file()
    corpus = read_flickr_captions(args.images) if flickr else None  # real-length token sequences
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return str(build_random_arch(args.random_arch, scratch / "model", device, corpus))


def setup_train(args: argparse.Namespace, model_id: str, scratch: Path) -> dict[str, Any]:
    """Model, optimizer and one cached batch, built with altcap's own train functions."""
    from altcap.train.compile import compile_for_training
    from altcap.train.config import TrainConfig
    from altcap.train.data import make_collate
    from altcap.train.frozen import free_cached_part, frozen_submodules
    from altcap.train.run import CaptionLoss, build_optimizer, build_scheduler, load_train_model
    from altcap.train.validate import validate_train_config

    sets = [f"model.model_id={model_id}", f"data.manifest={write_manifest(args, scratch / 'data')}"]
    sets += [f"output_dir={scratch / 'run'}", f"batch_size={args.batch_size}", "data.val_split=null"]
    sets += [f"lora.r={args.lora_r}", f"lora.alpha={args.lora_r}", f"compile_mode={args.compile_mode}"]
    sets += [f"compile_scope={args.compile_scope}"]
    sets += [f"gradient_checkpointing={args.gradient_checkpointing}", f"compile={args.compile}"]
    sets += [f"model.family={args.family}"] if args.family else []
    cfg = load_config(TrainConfig, None, {}, sets)
    plan, device = validate_train_config(cfg), "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    model, processor = load_train_model(cfg, plan, device)
    family, precision = plan.family, plan.precision
    examples = [plan.train_examples[i % len(plan.train_examples)] for i in range(args.batch_size)]
    model.eval()  # the cache encodes with the frozen part in eval mode and keeps features on the CPU
    images, prompts = [load_rgb(e.image) for e in examples], [e.prompt for e in examples]
    inputs = move_to_device(family.build_inputs(processor, images, prompts, None), device)
    with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=precision == "bf16"):
        features = {k: v.to("cpu") for k, v in family.feature_cache.encode_images(model, inputs).items()}
    free_cached_part(model, family)  # as `altcap train` does: training from features never runs them
    batch = make_collate(family, processor, cfg.data.max_caption_tokens, with_pixels=False)(examples)
    loss_module = CaptionLoss(model, family)
    if cfg.compile:
        compile_for_training(loss_module, cfg)
    optimizer = build_optimizer(cfg, loss_module, device)
    loss_module.train()
    for module in frozen_submodules(model, family):
        module.eval()
    scheduler = build_scheduler(cfg, optimizer, args.steps + args.warmup_steps)
    return dict(
        cfg=cfg, device=device, precision=precision, loss_module=loss_module, optimizer=optimizer,
        scheduler=scheduler, inputs=batch["inputs"], features=features, model=model,
    )  # fmt: skip


def make_train_step(state: dict[str, Any]) -> Callable[[], float]:
    """One optimizer step from cached features, as `altcap.train.loop.fit` runs it (no accumulation)."""
    device, loss_module, optimizer = state["device"], state["loss_module"], state["optimizer"]
    max_norm = state["cfg"].optim.max_grad_norm

    def step() -> torch.Tensor:
        # fit() gets the text batch from the loader and the features from the cache on the CPU.
        inputs, features = move_to_device(state["inputs"], device), move_to_device(state["features"], device)
        with torch.autocast(device, torch.bfloat16, enabled=state["precision"] == "bf16"):
            loss = loss_module(inputs, features)
        loss.backward()
        fused = optimizer.defaults.get("fused")
        if fused:  # fit(): the fused optimizer skips a NaN step on the GPU, no sync
            optimizer.found_inf = (~torch.isfinite(loss.detach())).float()
        elif not torch.isfinite(loss.detach()).item():  # fit()'s check_finite: a sync per step
            raise RuntimeError(f"loss is {loss.item()}; the profiled step diverged")
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_norm)
        optimizer.step()
        if fused:
            del optimizer.found_inf
        state["scheduler"].step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()  # fit() reads losses at log rows only

    return step


def setup_caption(args: argparse.Namespace, model_id: str, scratch: Path) -> dict[str, Any]:
    """Inference model (as `altcap caption` loads it), one batch, and its `generate` step."""
    from altcap.infer.config import GenerationConfig
    from altcap.models.loading import ModelConfig, load_model

    model, processor, family = load_model(ModelConfig(model_id=model_id, family=args.family))
    model.requires_grad_(False)  # nothing trains: every weight counts as frozen in the breakdown
    examples = read_split_examples(write_manifest(args, scratch / "data"), "train", None)
    images = [load_rgb(examples[i % len(examples)].image) for i in range(args.batch_size)]
    inputs = move_to_device(family.build_inputs(processor, images), model.device, model.dtype)
    n = args.max_new_tokens
    kwargs = GenerationConfig(
        num_beams=args.num_beams, max_new_tokens=n, min_new_tokens=n, cuda_graphs=args.cuda_graphs
    ).generate_kwargs()

    @torch.inference_mode()
    def step() -> str:
        return family.generate(model, processor, inputs, kwargs)[0]

    return {"model": model, "generation": kwargs, "step": step}


def synchronize() -> None:
    # Kernels run asynchronously; without a sync the timer stops before the step's work is done.
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def profile_steps(step: Callable[[], Any], warmup_steps: int, steps: int) -> tuple[Any, list[float], list]:
    """Warm-up steps, then `steps` profiled ones; returns (profiler, wall seconds per step, outputs)."""
    for _ in tqdm(range(warmup_steps), desc="warm-up"):
        step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.reset_peak_memory_stats()
    walls_s, outputs = [], []
    with torch.profiler.profile(activities=activities, record_shapes=False, profile_memory=True) as prof:
        for _ in tqdm(range(steps), desc="profiled steps"):
            synchronize()
            began = time.perf_counter()
            with torch.profiler.record_function("altcap_step"):
                outputs.append(step())
            synchronize()
            walls_s.append(time.perf_counter() - began)
    return prof, walls_s, outputs


def summarize_events(prof: Any, steps: int, wall_s: float) -> dict[str, Any]:
    """Per-step kernel time, launches and busy fraction, plus the top tables (ms per step)."""
    # Raw events, not key_averages(): there an op and the kernel it launched carry the same self
    # CUDA time, so one table would count it twice. Rows: [calls, self CPU ms, self CUDA ms].
    # GPU-side copies of record_function ranges are CUDA events too, spanning whole steps: skipped
    # (pytorch/pytorch#130730).
    ops: dict[str, list[float]] = {}
    kernels: dict[str, list[float]] = {}
    launches = 0
    for event in prof.events():
        is_device = event.device_type == DeviceType.CUDA
        if event.name != "[memory]" and not (is_device and event.is_user_annotation):
            row = (kernels if is_device else ops).setdefault(event.name, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += event.self_cpu_time_total / 1e3
            row[2] += event.self_device_time_total / 1e3
            launches += is_device and not event.name.startswith(COPY_PREFIXES)
    kernel_ms = sum(row[2] for row in kernels.values()) / steps
    tables = (rank_rows(ops, 2, steps), rank_rows(kernels, 2, steps), rank_rows(ops, 1, steps))
    result = dict(zip(CUDA_FIELDS, (kernel_ms, kernel_ms / 1e3 / wall_s, launches / steps), strict=True))
    result.update(zip(TABLES, tables, strict=True))
    if not torch.cuda.is_available():
        result.update(dict.fromkeys([*CUDA_FIELDS, *TABLES[:2]]))
    return result


def rank_rows(rows: dict[str, list[float]], col: int, steps: int) -> list[dict[str, Any]]:
    """The TOP_ROWS names with the largest `col` (1 = self CPU, 2 = self CUDA ms), per step."""
    share = 100 / (sum(row[col] for row in rows.values()) or 1.0)
    ranked = sorted(rows.items(), key=lambda item: item[1][col], reverse=True)[:TOP_ROWS]
    key = "self_cuda_ms_per_step" if col == 2 else "self_cpu_ms_per_step"
    return [
        {"name": name, "calls_per_step": row[0] / steps, key: row[col] / steps, "percent": row[col] * share}
        for name, row in ranked
    ]  # fmt: skip


def summarize_memory(model: Any, optimizer: Any | None) -> dict[str, int | None]:
    """Peak allocated memory (CUDA) and what parameters, gradients and optimizer state take of it."""

    def count_bytes(tensors: Any) -> int:  # meta tensors: the released frozen modules hold no memory
        return sum(t.numel() * t.element_size() for t in tensors if t.device.type != "meta")

    trainable = count_bytes(p for p in model.parameters() if p.requires_grad)
    frozen = count_bytes(p for p in model.parameters() if not p.requires_grad)
    states = optimizer.state.values() if optimizer is not None else []
    optimizer_bytes = count_bytes(t for s in states for t in s.values() if isinstance(t, torch.Tensor))
    grads = trainable if optimizer is not None else 0  # freed by zero_grad, but alive at backward's peak
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    rest = None if peak is None else peak - trainable - frozen - grads - optimizer_bytes
    return {
        "peak_allocated_bytes": peak, "parameters_trainable_bytes": trainable,
        "parameters_frozen_bytes": frozen, "gradients_bytes": grads,
        "optimizer_state_bytes": optimizer_bytes, "activations_and_workspace_bytes": rest,
    }  # fmt: skip


def run_profile(args: argparse.Namespace, scratch: Path) -> tuple[dict[str, Any], Any]:
    """Set up the mode, profile it, and build the report (the profiler is returned for --trace)."""
    model_id, train = prepare_model_id(args, scratch), args.mode == "train"
    state = setup_train(args, model_id, scratch) if train else setup_caption(args, model_id, scratch)
    prof, walls_s, outputs = profile_steps(
        make_train_step(state) if train else state["step"], args.warmup_steps, args.steps
    )
    wall_s = sum(walls_s) / len(walls_s)
    result = {
        "step_wall_s": walls_s,
        "step_wall_s_mean": wall_s,
        **summarize_events(prof, args.steps, wall_s),
    }
    result["memory"] = summarize_memory(state["model"], state.get("optimizer"))
    result["losses" if train else "first_captions"] = [
        o.item() if isinstance(o, torch.Tensor) else o for o in outputs
    ]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings["train_config"] = state["cfg"].model_dump(mode="json") if train else None
    settings["generation"] = state.get("generation")
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": args.mode,
        "model": "tiny random blip2-opt" if args.tiny else args.random_arch or args.model_id,
        "hardware": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": package_versions(),
        "settings": settings,
        "results": result,
    }
    return report, prof


def print_tables(report: dict[str, Any]) -> None:
    """Headline figures, memory and the top tables."""
    result = report["results"]
    print(f"{report['mode']}: {report['model']} on {report['hardware']}")
    for key in ("step_wall_s_mean", *CUDA_FIELDS, "memory"):
        print(f"  {key}: {result[key]}")
    for key in (key for key in TABLES if result[key]):
        print(f"\n{key} (per step)")
        for row in result[key]:
            name, calls, ms, percent = row.values()
            print(f"  {ms:10.3f} ms {percent:5.1f}% {calls:8.1f} calls  {name[:100]}")


def main(argv: list[str] | None = None) -> Path:
    """Profile the chosen mode and write the JSON report (and trace); returns the JSON path."""
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = args.out or RESULTS_DIR / f"profile-{args.mode}-{stamp}.json"
    with tempfile.TemporaryDirectory(prefix="altcap-profile-") as tmp:
        report, prof = run_profile(args, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.trace:  # gzipped: the GPU machine returns files of at most 16 MiB
        raw = out.with_name(f"{out.stem}.trace.json")
        prof.export_chrome_trace(str(raw))
        raw.with_name(raw.name + ".gz").write_bytes(gzip.compress(raw.read_bytes()))
        raw.unlink()
        report["trace"] = f"{raw}.gz"
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print_tables(report)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
