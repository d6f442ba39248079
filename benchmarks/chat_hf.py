"""The Hugging Face side of `chat_vlm_caption`: a chat VLM loaded and prompted as a notebook does,
captioned with batched `generate`, and the CUDA peak-memory helpers both sides use."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchmarks.chat_bench import pick_device
from benchmarks.chat_data import PROMPT
from benchmarks.common import synchronize
from benchmarks.phase_timer import PhaseTimer


def load_hf_processor(folder: Path, max_pixels: int) -> tuple[Any, str]:
    """`AutoProcessor.from_pretrained`, as a notebook loads it, with the image size a user sets
    from the model card (Qwen `max_pixels`, SmolVLM `longest_edge`; altcap's `apply_pixel_limits`
    maps one pixel budget onto each, so both sides see the same image tokens). Where loading fails
    (no torchvision on this CPU box: Qwen's processor declares a video processor) altcap's
    processor loader stands in, and the returned description says so and why."""
    from transformers import AutoProcessor

    from altcap.models.processors import apply_pixel_limits

    try:
        processor, source = AutoProcessor.from_pretrained(folder), "AutoProcessor"
    except Exception as err:  # ImportError/OSError without torchvision; anything else is reported
        from transformers import AutoConfig

        from altcap.models.processors import load_processor

        model_type = AutoConfig.from_pretrained(folder).model_type
        reason = f"{type(err).__name__}: {str(err)[:200]}"
        processor, source = load_processor(str(folder), model_type), f"altcap load_processor ({reason})"
    apply_pixel_limits(processor, max_pixels, None)
    return processor, source


def reset_peak() -> None:
    """Free cached blocks and restart the CUDA peak counter (no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float | None:
    """CUDA peak allocated since `reset_peak`, in GB; None on the CPU."""
    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None


def load_hf_model(folder: Path) -> Any:
    """`AutoModelForImageTextToText.from_pretrained` in bf16 on the GPU (fp32 on the CPU), as a
    notebook loads it: transformers' default attention."""
    from transformers import AutoModelForImageTextToText

    device = pick_device()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype).to(device).eval()


def hf_prompt(processor: Any) -> str:
    """The user turn (image + instruction) and the generation prompt, through the chat template."""
    if not getattr(processor, "chat_template", None):
        return PROMPT  # PaliGemma: a prefix, no template
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    try:
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    except AttributeError:  # SmolVLM's reads its video processor, which none is without torchvision
        template = processor.chat_template
        return processor.tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=True
        )


def caption_hf(model: Any, processor: Any, paths: list[Path], batch_size: int, new_tokens: int) -> dict:
    """HF batched generate over `paths`; returns seconds, seconds per phase and the new token ids
    of every row."""
    processor.tokenizer.padding_side = "left"
    phases = PhaseTimer().attach(model)
    prompt = hf_prompt(processor)
    ids: list[list[int]] = []
    lengths: list[int] = []
    synchronize()
    began = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        with phases.timed("prepare"):
            images = [[Image.open(p).convert("RGB")] for p in paths[start : start + batch_size]]
            inputs = processor(text=[prompt] * len(images), images=images, padding=True, return_tensors="pt")
            inputs = inputs.to(model.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            out = model.generate(
                **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1
            )
        lengths.append(inputs["input_ids"].shape[1])
        ids.extend(out[:, lengths[-1] :].tolist())
    synchronize()
    seconds = time.perf_counter() - began
    phases.detach()
    return {"seconds": seconds, "phase_s": phases.seconds(), "ids": ids, "prompt_tokens": max(lengths)}
