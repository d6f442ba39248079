"""QLoRA's 4-bit weights: one bitsandbytes config for every family's quantized loader."""

from __future__ import annotations

from typing import Any


def build_quantization_config() -> Any:
    """4-bit NF4 weights with bf16 compute and double quantization (bitsandbytes, CUDA), as QLoRA."""
    import torch
    import transformers

    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
