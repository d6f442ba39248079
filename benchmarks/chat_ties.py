"""Why greedy ids differ between two captioning runs of the same weights: the logit gap at the
first step where they part.

With random weights the top tokens are near-ties, and bf16 kernels that round differently (another
batch shape, a packed attention call instead of a loop) flip some of them; once one token differs
the rest of the row follows it. For each differing row, HF's model runs once over the image, the
prompt and the tokens both runs agreed on (teacher forcing). At the parting step it gives the gap
between the logit of HF's token and that of the other run's token; at the agreed steps before it,
the gap between the top two tokens (how close a call usually is). A parting gap of the size of
bf16's rounding of the logits (2^-8 of their magnitude per rounding) is a near-tie flipped by
rounding, not a different computation.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchmarks.chat_hf import hf_prompt

BF16_ULP = 2.0**-7  # bf16 keeps 8 significant bits: neighbouring values differ by 2^-7 relative


def first_difference(a: list[int], b: list[int]) -> int:
    """The first step where two id lists differ (the shorter length when one is a prefix)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def row_inputs(processor: Any, path: Path, agreed: list[int], device: Any, dtype: Any) -> dict[str, Any]:
    """One row's inputs: image, prompt and generation prompt, then the agreed tokens."""
    processor.tokenizer.padding_side = "left"
    prompt = hf_prompt(processor)
    image = [[Image.open(path).convert("RGB")]]
    inputs = dict(processor(text=[prompt], images=image, return_tensors="pt"))
    length = inputs["input_ids"].shape[1]
    extra = torch.tensor([agreed], dtype=inputs["input_ids"].dtype)
    for key, value in list(inputs.items()):
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (1, length):
            # input ids get the agreed tokens; the mask 1 (attend); token-type ids 0 (text)
            fill = extra if key == "input_ids" else torch.full_like(extra, int(key == "attention_mask"))
            inputs[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if "pixel_values" in moved:
        moved["pixel_values"] = moved["pixel_values"].to(dtype)
    return moved | {"prompt_length": length}


@torch.inference_mode()
def explain_differences(
    model: Any, processor: Any, paths: list[Path], hf_ids: list[list[int]], other_ids: list[list[int]],
    limit: int = 64,
) -> dict[str, Any]:
    """Logit gaps at the parting step of up to `limit` differing rows, against the top-2 gaps of
    the agreed steps before it.

    Args:
        model, processor: HF's model and processor (the reference side).
        paths: the images, in row order.
        hf_ids, other_ids: each run's new token ids per row.
        limit: rows examined (the first differing ones).

    Returns:
        Summary statistics and the examined rows.
    """
    rows, agreed_gaps = [], []
    differing = [(p, a, b) for p, a, b in zip(paths, hf_ids, other_ids, strict=True) if a != b][:limit]
    for path, ours, theirs in differing:
        step = first_difference(ours, theirs)
        if step >= min(len(ours), len(theirs)):
            continue  # one row is a prefix of the other: no parting token
        inputs = row_inputs(processor, path, ours[:step], model.device, model.dtype)
        start = inputs.pop("prompt_length") - 1
        logits = model(**inputs).logits[0, start:].float()
        top2 = logits.topk(2, dim=-1).values
        agreed_gaps.extend((top2[:-1, 0] - top2[:-1, 1]).tolist())
        last = logits[-1]
        gap = float(last[ours[step]] - last[theirs[step]])
        magnitude = float(max(last[ours[step]].abs(), last[theirs[step]].abs()))
        rows.append({"image": path.name, "step": step, "gap": round(gap, 5), "gap_in_bf16_ulps": round(
            abs(gap) / max(magnitude * BF16_ULP, 1e-12), 2)})
    return summarize(rows, agreed_gaps)


def summarize(rows: list[dict[str, Any]], agreed_gaps: list[float]) -> dict[str, Any]:
    """Medians and maxima of the parting gaps (absolute and in bf16 ulps) and of agreed top-2 gaps."""
    if not rows:
        return {"rows_examined": 0}
    gaps = [abs(row["gap"]) for row in rows]
    ulps = [row["gap_in_bf16_ulps"] for row in rows]
    return {
        "rows_examined": len(rows),
        "parting_gap_median": round(statistics.median(gaps), 5),
        "parting_gap_max": round(max(gaps), 5),
        "parting_gap_bf16_ulps_median": round(statistics.median(ulps), 2),
        "parting_gap_bf16_ulps_max": round(max(ulps), 2),
        "rows_within_4_bf16_ulps": sum(u <= 4 for u in ulps),
        "agreed_steps": len(agreed_gaps),
        "agreed_top2_gap_median": round(statistics.median(agreed_gaps), 5) if agreed_gaps else None,
        "rows": rows,
    }


def explain_against_hf(
    folder: Path,
    max_pixels: int,
    paths: list[Path],
    hf_ids: list[list[int]],
    runs: dict[str, list[list[int]]],
) -> dict[str, Any]:
    """`explain_differences` of each run in `runs` against HF's ids, with HF's model loaded again
    (after the timed passes, so no timed side shares the GPU with it)."""
    from benchmarks.chat_hf import load_hf_model, load_hf_processor

    if all(ids == hf_ids for ids in runs.values()):
        return {}
    model = load_hf_model(folder)
    processor, _ = load_hf_processor(folder, max_pixels)
    try:
        return {name: explain_differences(model, processor, paths, hf_ids, ids) for name, ids in runs.items()}
    finally:
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
