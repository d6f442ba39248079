"""Issue #26 item 6, captioning: Hugging Face batched `generate` vs altcap's captioning path on a
chat VLM (Qwen2.5-VL-3B shapes by default), same weights, same images, bf16, greedy, 30 new tokens.

  hf      what a notebook does: AutoModelForImageTextToText + AutoProcessor + chat template +
          `model.generate` in plain batches (left padding), at each --hf-batch-sizes; the best
          batch size is the baseline.
  altcap  `caption_items`, the loop under `altcap caption` (throughput ordering, worker prefetch,
          JSONL writes), at --altcap-batch-size.

Both sides decode exactly --new-tokens tokens (min = max), so every row costs the same steps, and
stop on the same tokens. Both sides load the same folder, so the weights are identical; each
loads it its own way (altcap's loader may choose other attention kernels, which is part of what
is measured). Also reported: the share of rows whose greedy token ids are identical
between altcap and HF's best batch size, with the differing rows listed (first differing step).

    PYTHONPATH=src python -m benchmarks.chat_vlm_caption --model-dir /root/chatbench/qwen2.5-vl-3b-instruct
    PYTHONPATH=src python -m benchmarks.chat_vlm_caption --tiny --rows 8 --hf-batch-sizes 4 \
        --altcap-batch-size 4
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.chat_bench import card_slug, ensure_model, pick_device
from benchmarks.chat_data import PROMPT, write_random_images
from benchmarks.chat_hf import caption_hf, load_hf_model, load_hf_processor, peak_gb, reset_peak
from benchmarks.chat_ties import explain_against_hf, first_difference
from benchmarks.common import RESULTS_DIR, synchronize, write_report
from benchmarks.phase_timer import PhaseTimer, host_profile


def caption_altcap(loaded: tuple, paths: list[Path], args: argparse.Namespace, scratch: Path) -> dict:
    """altcap's `caption_items` over `paths`, recording the ids `model.generate` returns per batch."""
    from altcap.infer.caption import CaptionItem, caption_items, order_for_throughput
    from altcap.infer.config import CaptionConfig, GenerationConfig

    model, processor, family, model_cfg = loaded
    out = scratch / f"altcap-{time.perf_counter_ns()}.jsonl"
    # Plain greedy like the HF side: altcap's default no_repeat_ngram_size=3 would change the ids.
    generation = GenerationConfig(
        num_beams=1,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        no_repeat_ngram_size=0,
        cuda_graphs=args.cuda_graphs,
    )
    cfg = CaptionConfig(
        model=model_cfg,
        images=paths[0].parent,
        out=out,
        prompt=PROMPT,
        generation=generation,
        batch_size=args.altcap_batch_size,
        num_workers=args.num_workers,
    )
    recorded: list[tuple[torch.Tensor, int]] = []
    generate = model.generate
    # Host-side timeline (s from the start): when each batch's inputs were ready, when each
    # generate call began and returned; the gaps are where no phase span can look.
    timeline: list[list[Any]] = []

    def recording_generate(**kwargs: Any) -> torch.Tensor:
        start = time.perf_counter() - began
        sequences = generate(**kwargs)
        timeline.append(["generate", round(start, 3), round(time.perf_counter() - began, 3)])
        recorded.append((sequences, kwargs["input_ids"].shape[1]))
        return sequences

    items = order_for_throughput([CaptionItem(p.name, p) for p in paths])
    model.generate = recording_generate
    phases = PhaseTimer().attach(model)
    try:
        synchronize()
        began = time.perf_counter()
        profile_name = f"altcap-caption-{model_cfg.vision_attention}-{len(paths)}"
        with host_profile(profile_name), timed_batches(timeline, began):
            written = caption_items(model, processor, family, items, cfg, progress=False)
            synchronize()
        seconds = time.perf_counter() - began
    finally:
        del model.generate  # the instance attribute; the class's generate shows through again
        phases.detach()
    ids = [row[length:].tolist() for sequences, length in recorded for row in sequences]
    by_key = dict(zip([item.key for item in items], ids, strict=False))
    ids = [by_key[p.name] for p in paths]
    return {
        "seconds": seconds,
        "phase_s": phases.seconds(),  # no "prepare": workers prepare batches while the GPU runs
        "written": written,
        "ids": ids,
        "prompt_tokens": max(n for _, n in recorded),
        "timeline": timeline,
    }


@contextlib.contextmanager
def timed_batches(timeline: list[list[Any]], began: float) -> Iterator[None]:
    """Record in `timeline` when `caption_items` receives each prepared batch (host seconds)."""
    from altcap.infer import caption

    original = caption.iter_prepared_batches

    def recording(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in original(*args, **kwargs):
            timeline.append(["inputs_ready", round(time.perf_counter() - began, 3)])
            yield batch

    caption.iter_prepared_batches = recording
    try:
        yield
    finally:
        caption.iter_prepared_batches = original


def time_vision_loop(
    folder: Path, paths: list[Path], warm: list[Path], args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    """altcap's caption pass with `model.vision_attention="sdpa"` (transformers' per-span loop)."""
    loaded = load_altcap_model(folder, args.image_px * args.image_px, vision_attention="sdpa")
    caption_altcap(loaded, warm, args, scratch)
    run_ = caption_altcap(loaded, paths, args, scratch)
    del loaded
    gc.collect()
    rate = len(paths) / run_["seconds"]
    print(f"altcap, vision attention as transformers' loop: {rate:.1f} captions/s", flush=True)
    return {key: run_[key] for key in ("seconds", "phase_s", "ids")} | {"captions_per_s": rate}


def compare_ids(hf: list[list[int]], altcap: list[list[int]], paths: list[Path]) -> dict[str, Any]:
    """Share of rows with identical greedy ids; the differing rows with their first differing step."""
    differing = []
    for path, a, b in zip(paths, hf, altcap, strict=True):
        if a != b:
            differing.append({"image": path.name, "first_differing_step": first_difference(a, b)})
    return {
        "rows": len(paths),
        "identical_rows": len(paths) - len(differing),
        "identical_share": round((len(paths) - len(differing)) / len(paths), 4),
        "differing_rows": differing[:50],
    }


def load_altcap_model(folder: Path, max_pixels: int | None, vision_attention: str = "auto") -> tuple:
    """The model through altcap's loader (bf16 on a GPU), as `altcap caption` loads it."""
    from altcap.models.loading import ModelConfig, load_model

    device = pick_device()
    cfg = ModelConfig(
        model_id=str(folder),
        device=device,
        dtype="bfloat16" if device == "cuda" else "float32",
        max_image_pixels=max_pixels,
        vision_attention=vision_attention,
    )
    model, processor, family = load_model(cfg)
    return model.eval(), processor, family, cfg


def run(args: argparse.Namespace, folder: Path, scratch: Path) -> dict[str, Any]:
    """Time HF at each batch size, then altcap once (each warmed up, one model in memory at a
    time so each peak is its own), and compare the ids."""
    from altcap.models.fused_vision_rotary import kernel_in_use

    paths = write_random_images(scratch / "images", args.rows, (args.image_px, args.image_px))
    warm = paths[: min(len(paths), 8)]
    model = load_hf_model(folder)
    hf_processor, processor_source = load_hf_processor(folder, args.image_px * args.image_px)
    caption_hf(model, hf_processor, warm, len(warm), args.new_tokens)
    hf_runs = {}
    for size in args.hf_batch_sizes:
        reset_peak()
        run_ = caption_hf(model, hf_processor, paths, size, args.new_tokens)
        rate = len(paths) / run_["seconds"]
        hf_runs[size] = {**run_, "captions_per_s": rate, "peak_allocated_gb": peak_gb()}
        print(f"hf batch {size}: {hf_runs[size]['captions_per_s']:.1f} captions/s", flush=True)
    best = max(hf_runs, key=lambda size: hf_runs[size]["captions_per_s"])
    del model
    gc.collect()
    loaded = load_altcap_model(folder, args.image_px * args.image_px)
    caption_altcap(loaded, warm, args, scratch)
    reset_peak()
    altcap = caption_altcap(loaded, paths, args, scratch)
    altcap_rate = len(paths) / altcap["seconds"]
    print(f"altcap batch {args.altcap_batch_size}: {altcap_rate:.1f} captions/s", flush=True)
    packed = loaded[2].packed_vision_attention is not None
    del loaded
    gc.collect()
    # Where the tower packs spans: the same run with transformers' per-span loop, so the one-call
    # attention's own share of the ratio shows.
    loop = (
        time_vision_loop(folder, paths, warm, args, scratch) if packed and not args.skip_vision_loop else None
    )
    runs = {"altcap": altcap["ids"]} | ({"altcap_vision_sdpa_loop": loop["ids"]} if loop else {})
    ties = explain_against_hf(folder, args.image_px * args.image_px, paths, hf_runs[best]["ids"], runs)
    if loop is not None:
        loop["greedy_ids_vs_hf_best"] = compare_ids(hf_runs[best]["ids"], loop.pop("ids"), paths)
    # The noise floor of "identical ids": HF against itself at its other batch sizes (bf16 kernels
    # round differently per batch shape; random weights leave near-ties between the top tokens).
    hf_self = {
        size: compare_ids(hf_runs[best]["ids"], run_["ids"], paths)["identical_share"]
        for size, run_ in hf_runs.items()
        if size != best
    }
    return {
        "hf_processor": processor_source,
        "hf": {size: {k: v for k, v in r.items() if k != "ids"} for size, r in hf_runs.items()},
        "hf_best_batch_size": best,
        "altcap": {
            "batch_size": args.altcap_batch_size,
            "seconds": altcap["seconds"],
            "captions_per_s": altcap_rate,
            "captions_written": altcap["written"],
            "prompt_tokens": altcap["prompt_tokens"],  # padded prompt (image + template) per row
            "phase_s": altcap["phase_s"],
            "timeline_s": altcap["timeline"],
            "peak_allocated_gb": peak_gb(),
            "vision_rotary": kernel_in_use(),  # liger's kernel, transformers' own, or no rotary tower
        },
        "altcap_vision_sdpa_loop": loop,
        "hf_identical_share_vs_its_best_batch": hf_self,
        "ratio_altcap_over_hf_best": altcap_rate / hf_runs[best]["captions_per_s"],
        "greedy_ids": compare_ids(hf_runs[best]["ids"], altcap["ids"], paths),
        # Each differing row's logit gap where it parts from HF's (benchmarks/chat_ties.py).
        "parting_gaps_vs_hf_best": ties,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--arch", default="qwen2.5-vl-3b-instruct", help="Architecture (benchmarks.chat_archs)."
    )
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="Random-weight model folder (built if missing)."
    )
    parser.add_argument("--tiny", action="store_true", help="Tiny sizes on the CPU (smoke test).")
    parser.add_argument("--rows", type=int, default=512, help="Images captioned per timed pass.")
    parser.add_argument("--image-px", type=int, default=448, help="Square image side (448: 256 Qwen tokens).")
    parser.add_argument("--new-tokens", type=int, default=30)
    parser.add_argument(
        "--hf-batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128, 256]
    )
    parser.add_argument("--altcap-batch-size", type=int, default=256)
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="altcap: generation.cuda_graphs (decode steps)."
    )
    parser.add_argument(
        "--skip-vision-loop",
        action="store_true",
        help="Skip the diagnostic pass with transformers' vision loop.",
    )
    parser.add_argument("--num-workers", type=int, default=4, help="altcap's image-preparing workers.")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Run the comparison and write the JSON report; returns its path."""
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="chat-vlm-caption-"))
    folder, build_s = ensure_model(args.arch, args.model_dir or scratch / "model", args.tiny)
    result = run(args, folder, scratch)
    report = {
        "benchmark": "chat_vlm_caption",
        "what": f"{args.rows} random {args.image_px}px images, greedy, exactly {args.new_tokens} new tokens, "
        "both sides load the same folder (random weights, full-size architecture unless tiny); "
        "seconds include image loading and preprocessing on both sides",
        "arch": args.arch,
        "tiny": args.tiny,
        "prompt": PROMPT,
        "model_build_s": round(build_s, 1),
        **result,
    }
    out = args.out or RESULTS_DIR / f"chat-vlm-caption-{args.arch}-{card_slug()}.json"
    write_report(out, report)
    print(
        f"altcap / HF best (batch {result['hf_best_batch_size']}): "
        f"{result['ratio_altcap_over_hf_best']:.2f}x; "
        f"identical greedy rows {result['greedy_ids']['identical_share']:.1%}"
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
