"""Sizes of the five shipped chat-VLM recipes' architectures, from the checkpoints' config.json
(sources cited per entry), and the tiny overrides the CPU tests build them with.

Each entry: (model_type, text config, vision config, top-level config fields, image processor
kwargs, processor kwargs). Image processors get the checkpoints' own resolution settings; altcap
maps a recipe's `max_image_pixels` onto them at load time, as for a hub id.
"""

from __future__ import annotations

# name -> (model_type, text sizes, vision sizes, top-level fields, image processor, processor kwargs).
# Qwen/Qwen2.5-VL-3B-Instruct config.json (as printed in a public model notes file; sizes also
# in the 5 GitHub configs found by `find_string '"out_hidden_size": 2048'`).
_QWEN25_3B = (
    "qwen2_5_vl",
    {
        "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
        "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6, "vocab_size": 151936, "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
    },
    {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "hidden_act": "silu",
    },
    {"tie_word_embeddings": True},
    {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2},
    {},
)
# Qwen/Qwen3-VL-4B-Instruct config.json (as copied into public Qwen3-VL text-encoder loaders).
_QWEN3_4B = (
    "qwen3_vl",
    {
        "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 262144, "rms_norm_eps": 1e-6,
        "vocab_size": 151936, "tie_word_embeddings": True,
        "rope_parameters": {
            "rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
    },
    {
        "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2560,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [5, 11, 17], "hidden_act": "gelu_pytorch_tanh",
    },
    {"tie_word_embeddings": True},
    {"min_pixels": 65536, "max_pixels": 16777216, "patch_size": 16, "merge_size": 2},
    {},
)
# HuggingFaceTB/SmolVLM2-2.2B-Instruct: SmolVLM-Instruct's sizes (public config copies: SmolLM2-1.7B
# decoder, rope_theta 273768, SigLIP-so400m at 384 px, scale_factor 3 -> 81 tokens a tile) with
# SmolVLM2's 49,280-entry vocabulary.
_SMOLVLM2_2B = (
    "smolvlm",
    {
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 32,
        "num_key_value_heads": 32, "head_dim": 64, "rms_norm_eps": 1e-5, "max_position_embeddings": 16384,
        "vocab_size": 49280, "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 273768.0},
    },
    {
        "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
        "patch_size": 14, "image_size": 384,
    },
    {"scale_factor": 3, "tie_word_embeddings": False},
    {"size": {"longest_edge": 1536}, "max_image_size": {"longest_edge": 384}, "do_image_splitting": True},
    {"image_seq_len": 81},
)
# google/gemma-3-4b-it config.json (public copies: Gemma 3 4B text 2560 x 34 layers, SigLIP 896 px,
# 256 tokens an image).
_GEMMA3_4B = (
    "gemma3",
    {
        "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 1024,
        "max_position_embeddings": 131072, "vocab_size": 262208,
    },
    {
        "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
        "patch_size": 14, "image_size": 896, "vision_use_head": False,
    },
    {"mm_tokens_per_image": 256},
    {"size": {"height": 896, "width": 896}},
    {"image_seq_length": 256},
)
# google/paligemma2-3b-pt-224: Gemma 2 2B decoder (google/gemma-2-2b config.json) behind SigLIP-so400m
# at 224 px projected to 2304 (public PaliGemma 2 encoder configs); 256 image tokens.
_PALIGEMMA2_3B = (
    "paligemma",
    {
        "model_type": "gemma2", "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256,
        "sliding_window": 4096, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
        "vocab_size": 257216,
    },
    {
        "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
        "patch_size": 14, "image_size": 224, "projection_dim": 2304, "vision_use_head": False,
    },
    {"projection_dim": 2304, "hidden_size": 2304},
    {"size": {"height": 224, "width": 224}, "image_seq_length": 256},
    {},
)
FULL_ARCHS: dict[str, tuple] = {
    "qwen2.5-vl-3b-instruct": _QWEN25_3B,
    "qwen3-vl-4b-instruct": _QWEN3_4B,
    "smolvlm2-2.2b-instruct": _SMOLVLM2_2B,
    "gemma-3-4b-it": _GEMMA3_4B,
    "paligemma2-3b-pt-224": _PALIGEMMA2_3B,
}
CHAT_ARCHS = tuple(FULL_ARCHS)

_TINY_TEXT = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 8192,
}
_TINY_MROPE = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
_TINY_SIGLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
# (text, vision, top) overrides: 2 layers, 64 wide, the same image resolution and token counts.
TINY_OVERRIDES: dict[str, tuple[dict, dict, dict]] = {
    "qwen2.5-vl-3b-instruct": (
        {**_TINY_TEXT, "rope_parameters": _TINY_MROPE},
        {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
         "fullatt_block_indexes": [1]},
        {},
    ),
    "qwen3-vl-4b-instruct": (
        {**_TINY_TEXT, "rope_parameters": {**_TINY_MROPE, "mrope_interleaved": True}},
        {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
         "deepstack_visual_indexes": [0]},
        {},
    ),
    "smolvlm2-2.2b-instruct": (_TINY_TEXT, _TINY_SIGLIP, {}),
    "gemma-3-4b-it": ({**_TINY_TEXT, "query_pre_attn_scalar": 16, "sliding_window": 64}, _TINY_SIGLIP, {}),
    "paligemma2-3b-pt-224": (
        {**_TINY_TEXT, "query_pre_attn_scalar": 16},
        {**_TINY_SIGLIP, "projection_dim": 64},
        {"projection_dim": 64, "hidden_size": 64},
    ),
}
