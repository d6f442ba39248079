"""The training benchmark's baseline: TRL's `SFTTrainer` on a chat VLM, as TRL's VLM SFT docs set
it up (prompt-completion conversations with an image, the processor as `processing_class`, a
PEFT `LoraConfig`), with `use_liger_kernel=True` (issue #26's strongest row) unless told not to.

It runs in its own process (`chat_vlm_train --side trl`): liger-kernel patches the model classes
of the whole process. TRL overrides two of transformers' defaults that matter here, so both are
set explicitly: gradient checkpointing off (TRL: on) and bf16 only on a GPU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.chat_bench import LOG_EVERY_N_STEPS, pick_device, read_gpu_peaks
from benchmarks.chat_data import PROMPT
from benchmarks.chat_hf import load_hf_processor

# Every attention and MLP projection of the language model's layers, never the vision tower's:
# what LLaMA-Factory's and ms-swift's "all linear" LoRA on the LM means for these models.
LM_LINEARS = r".*\.(language_model|text_model)\.layers\.\d+\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj"


def read_examples(manifest: Path) -> list[tuple[str, str]]:
    """(image path, caption) of every manifest row."""
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["image"], row["captions"][0]) for row in rows]


def build_dataset(examples: list[tuple[str, str]]) -> Any:
    """A `datasets.Dataset` in TRL's conversational prompt-completion form with one image a row
    (decoded from its file each time a batch needs it, like any image dataset)."""
    from datasets import Dataset, Image, Sequence

    user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    data = {
        "images": [[path] for path, _ in examples],
        "prompt": [user for _ in examples],
        "completion": [
            [{"role": "assistant", "content": [{"type": "text", "text": caption}]}] for _, caption in examples
        ],
    }
    return Dataset.from_dict(data).cast_column("images", Sequence(Image()))


def build_sft_config(args: Any, out: Path) -> Any:
    """TRL's SFTConfig for the run: the recipe's optimiser settings, batch, epochs, liger on/off."""
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=1e-4,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        max_grad_norm=1.0,
        bf16=cuda,
        gradient_checkpointing=False,
        use_liger_kernel=args.liger,
        max_length=None,  # TRL's advice for VLMs: truncation could cut image tokens
        completion_only_loss=True,  # loss on the caption, as altcap's
        logging_steps=LOG_EVERY_N_STEPS,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=args.num_workers,
        use_cpu=not cuda,
    )


def train_trl(args: Any, folder: Path, manifest: Path, work: Path) -> dict[str, Any]:
    """Load the model as TRL's docs do, build the trainer, train; time each part.

    Args:
        args: `chat_vlm_train` options (batch_size, epochs, lora_r, lora_alpha, liger, num_workers).
        folder: the model folder.
        manifest: the training manifest (same images and captions as altcap's side).
        work: scratch folder.

    Returns:
        Wall seconds (load, trainer build, train, end to end), samples/s of `train()`, peaks.
    """
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText
    from trl import SFTTrainer

    began = time.perf_counter()
    device = pick_device()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype, device_map={"": device})
    processor, processor_source = load_hf_processor(folder, args.image_px * args.image_px)
    loaded = time.perf_counter()
    examples = read_examples(manifest)
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.05,
        target_modules=LM_LINEARS,
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=build_sft_config(args, work / "trl-run"),
        train_dataset=build_dataset(examples),
        processing_class=processor,
        peft_config=lora,
    )
    built = time.perf_counter()
    output = trainer.train()
    if device == "cuda":
        torch.cuda.synchronize()
    done = time.perf_counter()
    samples = len(examples) * args.epochs
    return {
        "side": "trl",
        "variant": "SFTTrainer + liger-kernel" if args.liger else "SFTTrainer",
        "processor": processor_source,
        "load_s": round(loaded - began, 2),
        "trainer_build_s": round(built - loaded, 2),
        "train_s": round(done - built, 2),
        "end_to_end_s": round(done - began, 2),
        "samples": samples,
        "samples_per_s_train": round(samples / (done - built), 3),
        "final_train_loss": output.training_loss,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        **read_gpu_peaks(),
    }
