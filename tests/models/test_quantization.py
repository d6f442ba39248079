import torch

from altcap.models.quantization import build_quantization_config


def test_qlora_config_is_nf4_with_bf16_compute() -> None:
    config = build_quantization_config()
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and config.bnb_4bit_use_double_quant
