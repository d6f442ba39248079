"""Per-model-type facts of the tiny chat VLMs `tiny_chat.build_tiny_chat_model` builds: the
`TinySpec` record and the model types that prompt through a chat template (PaliGemma and
Florence-2, with their own text formats, are in `tiny_format_specs.py`).

Templates copy each real checkpoint's turn markers and end-of-turn token; sizes are the smallest
the model code accepts (32-wide, 1-2 layers, one or a few 28-64 px tiles per image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TinySpec:
    """What a tiny checkpoint of one model type needs besides sizes.

    specials: special tokens in vocabulary order; roles: tokenizer role -> token (eos, pad, bos);
    template: (user_open, image_text, user_close, assistant_open, answer_lead, assistant_close,
    bos); text/vision/top: config overrides; image_processor/processor: their init kwargs.
    """

    specials: tuple[str, ...]
    roles: dict[str, str]
    template: tuple[str, ...] | None
    text: dict[str, Any] = field(default_factory=dict)
    vision: dict[str, Any] = field(default_factory=dict)
    top: dict[str, Any] = field(default_factory=dict)
    image_processor: dict[str, Any] = field(default_factory=dict)
    processor: dict[str, Any] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)  # config field -> token whose id it takes
    named_tokens: dict[str, str] = field(default_factory=dict)  # tokenizer.<name> -> token (image_token, ...)
    extra_parts: dict[str, str] = field(
        default_factory=dict
    )  # processor part -> transformers class (defaults)
    text_key: str = "text_config"

_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_CHATML = ("<|im_start|>user\n", "{image}", "<|im_end|>\n", "<|im_start|>assistant\n", "", "<|im_end|>\n", "")
_QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
_QWEN_ROLES = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
_QWEN_IDS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}
_QWEN_PIXELS = {"min_pixels": 28 * 28, "max_pixels": 56 * 56, "patch_size": 14, "merge_size": 2}
_MROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}


def _with_image(template: tuple[str, ...], image: str) -> tuple[str, ...]:
    return tuple(part.replace("{image}", image) for part in template)


CHAT_TEMPLATE_SPECS: dict[str, TinySpec] = {
    "qwen2_5_vl": TinySpec(
        specials=_QWEN_SPECIALS,
        roles=_QWEN_ROLES,
        template=_with_image(_CHATML, _QWEN_IMAGE),
        text={"rope_parameters": _MROPE},
        vision={
            "out_hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "fullatt_block_indexes": [0],
            "window_size": 56,
        },
        token_ids=_QWEN_IDS,
        image_processor=_QWEN_PIXELS,
    ),
}

_GEMMA_SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
_SMOL_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in (1, 2) for c in (1, 2)),
)
_SMOL_TEMPLATE = (
    "User:",
    "<image>",
    "<end_of_utterance>\n",
    "Assistant:",
    " ",
    "<end_of_utterance>\n",
    "<|im_start|>",
)
_SMOL = dict(
    specials=_SMOL_SPECIALS,
    roles={"eos_token": "<end_of_utterance>", "pad_token": "<|im_end|>", "bos_token": "<|im_start|>"},
    template=_SMOL_TEMPLATE,
    vision={"image_size": 32, "patch_size": 8},
    top={"scale_factor": 2},
    token_ids={"image_token_id": "<image>"},
    image_processor={
        "size": {"longest_edge": 64},
        "max_image_size": {"longest_edge": 32},
        "do_image_splitting": True,
    },
    processor={"image_seq_len": 4},
)
SIGLIP_SIZES = {"image_size": 32, "patch_size": 8}  # a tiny SigLIP tower (also PaliGemma's)
_CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHAT_TEMPLATE_SPECS.update(
    {
        "qwen2_vl": TinySpec(
            specials=_QWEN_SPECIALS,
            roles=_QWEN_ROLES,
            template=_with_image(_CHATML, _QWEN_IMAGE),
            text={"rope_parameters": _MROPE},
            vision={
                "embed_dim": 32,
                "hidden_size": 32,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "mlp_ratio": 2,
            },
            token_ids=_QWEN_IDS,
            image_processor=_QWEN_PIXELS,
        ),
        "qwen3_vl": TinySpec(
            specials=_QWEN_SPECIALS,
            roles=_QWEN_ROLES,
            template=_with_image(_CHATML, _QWEN_IMAGE),
            text={"rope_parameters": {**_MROPE, "mrope_interleaved": True}},
            vision={
                "out_hidden_size": 32,
                "patch_size": 16,
                "spatial_merge_size": 2,
                "num_position_embeddings": 16,
                "deepstack_visual_indexes": [0],
            },
            token_ids=_QWEN_IDS,
            image_processor={"min_pixels": 32 * 32, "max_pixels": 64 * 64, "patch_size": 16, "merge_size": 2},
        ),
        "gemma3": TinySpec(
            specials=_GEMMA_SPECIALS,
            roles={"eos_token": "<eos>", "pad_token": "<pad>", "bos_token": "<bos>"},
            template=(
                "<start_of_turn>user\n",
                "<start_of_image>",
                "<end_of_turn>\n",
                "<start_of_turn>model\n",
                "",
                "<end_of_turn>\n",
                "<bos>",
            ),
            named_tokens={
                "boi_token": "<start_of_image>",
                "eoi_token": "<end_of_image>",
                "image_token": "<image_soft_token>",
            },
            text={"query_pre_attn_scalar": 16, "sliding_window": 64},
            vision=SIGLIP_SIZES,
            top={"mm_tokens_per_image": 4},
            token_ids={
                "boi_token_index": "<start_of_image>",
                "eoi_token_index": "<end_of_image>",
                "image_token_index": "<image_soft_token>",
            },
            image_processor={"size": {"height": 32, "width": 32}},
            processor={"image_seq_length": 4},
        ),
        "smolvlm": TinySpec(**_SMOL),
        "idefics3": TinySpec(**_SMOL),
        "internvl": TinySpec(
            specials=(*_CHATML_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
            roles=_QWEN_ROLES,
            template=_with_image(_CHATML, "<IMG_CONTEXT>\n"),
            named_tokens={
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            },
            vision={"image_size": [32, 32], "patch_size": [8, 8]},
            top={"image_seq_length": 4},
            token_ids={"image_token_id": "<IMG_CONTEXT>"},
            image_processor={"size": {"height": 32, "width": 32}, "crop_to_patches": True, "max_patches": 2},
            processor={"image_seq_length": 4},
        ),
        "llava_onevision": TinySpec(
            specials=(*_CHATML_SPECIALS, "<image>", "<video>"),
            roles=_QWEN_ROLES,
            template=_with_image(_CHATML, "<image>\n"),
            named_tokens={"image_token": "<image>", "video_token": "<video>"},
            vision=SIGLIP_SIZES,
            top={"image_grid_pinpoints": [[32, 32], [32, 64], [64, 32]]},
            token_ids={"image_token_index": "<image>", "video_token_index": "<video>"},
            image_processor={
                "size": {"height": 32, "width": 32},
                "image_grid_pinpoints": [[32, 32], [32, 64], [64, 32]],
            },
            processor={"num_image_tokens": 16, "vision_feature_select_strategy": "full"},
        ),
        "llava": TinySpec(
            specials=("<unk>", "<s>", "</s>", "<pad>", "<image>"),
            roles={"eos_token": "</s>", "pad_token": "<pad>", "bos_token": "<s>", "unk_token": "<unk>"},
            template=("USER: ", "<image>\n", "", " ASSISTANT:", " ", "</s>", "<s>"),
            named_tokens={"image_token": "<image>"},
            vision={"image_size": 32, "patch_size": 8, "projection_dim": 32},
            top={"image_seq_length": 16},
            token_ids={"image_token_index": "<image>"},
            image_processor={"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
            processor={
                "patch_size": 8,
                "vision_feature_select_strategy": "default",
                "num_additional_image_tokens": 1,
            },
        ),
        "aya_vision": TinySpec(
            specials=(
                "<PAD>",
                "<UNK>",
                "<BOS_TOKEN>",
                "<|END_OF_TURN_TOKEN|>",
                "<|START_OF_TURN_TOKEN|>",
                "<|USER_TOKEN|>",
                "<|CHATBOT_TOKEN|>",
                "<image>",
                "<|START_OF_IMG|>",
                "<|END_OF_IMG|>",
                "<|IMG_PATCH|>",
                "<|IMG_LINE_BREAK|>",
            ),
            roles={"eos_token": "<|END_OF_TURN_TOKEN|>", "pad_token": "<PAD>", "bos_token": "<BOS_TOKEN>"},
            template=(
                "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>",
                "<image>",
                "<|END_OF_TURN_TOKEN|>",
                "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
                "",
                "<|END_OF_TURN_TOKEN|>",
                "<BOS_TOKEN>",
            ),
            # Cohere scales logits by 1/16; at tiny width that leaves them too flat to learn.
            text={"logit_scale": 1.0},
            vision=SIGLIP_SIZES,
            top={"downsample_factor": 2},
            token_ids={"image_token_index": "<|IMG_PATCH|>"},
            image_processor={"size": {"height": 32, "width": 32}, "crop_to_patches": True, "max_patches": 2},
            processor={"patch_size": 8, "img_size": 32, "downsample_factor": 2},
        ),
        "glm4v": TinySpec(
            specials=(
                "<|endoftext|>",
                "[gMASK]",
                "<sop>",
                "<|user|>",
                "<|assistant|>",
                "<|begin_of_image|>",
                "<|end_of_image|>",
                "<|image|>",
                "<|video|>",
                "<|begin_of_video|>",
                "<|end_of_video|>",
            ),
            roles={"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
            template=(
                "<|user|>\n",
                "<|begin_of_image|><|image|><|end_of_image|>",
                "",
                "<|assistant|>\n",
                "",
                "",
                "[gMASK]<sop>",
            ),
            text={
                "rope_parameters": {
                    "rope_type": "default",
                    "mrope_section": [1, 1, 2],
                    "partial_rotary_factor": 0.5,
                }
            },
            vision={"out_hidden_size": 32, "patch_size": 14, "spatial_merge_size": 2, "image_size": 28},
            token_ids={
                "image_token_id": "<|image|>",
                "video_token_id": "<|video|>",
                "image_start_token_id": "<|begin_of_image|>",
                "image_end_token_id": "<|end_of_image|>",
                "video_start_token_id": "<|begin_of_video|>",
                "video_end_token_id": "<|end_of_video|>",
            },
            image_processor={
                "size": {"shortest_edge": 28 * 28, "longest_edge": 56 * 56},
                "patch_size": 14,
                "merge_size": 2,
            },
        ),
    }
)

_GEMMA4_SPECIALS = (
    *("<pad>", "<eos>", "<bos>", "<unk>", "<|turn>", "<turn|>", "<|image>", "<image|>", "<|image|>"),
    *("<|video|>", "<|audio>", "<audio|>", "<|audio|>"),
)
CHAT_TEMPLATE_SPECS.update(
    {
        "qwen3_5": TinySpec(
            specials=_QWEN_SPECIALS,
            roles=_QWEN_ROLES,
            template=_with_image(_CHATML, _QWEN_IMAGE),
            text={
                "layer_types": ["linear_attention", "full_attention"],
                "linear_num_key_heads": 2,
                "linear_num_value_heads": 2,
                "linear_key_head_dim": 8,
                "linear_value_head_dim": 8,
                "rope_parameters": {
                    **_MROPE,
                    "mrope_section": [1, 1, 2],
                    "partial_rotary_factor": 0.5,
                    "mrope_interleaved": True,
                },
            },
            vision={
                "out_hidden_size": 32,
                "patch_size": 16,
                "spatial_merge_size": 2,
                "num_position_embeddings": 16,
            },
            token_ids=_QWEN_IDS,
            image_processor={"min_pixels": 32 * 32, "max_pixels": 64 * 64, "patch_size": 16, "merge_size": 2},
        ),
        "gemma4": TinySpec(
            specials=_GEMMA4_SPECIALS,
            roles={"eos_token": "<eos>", "pad_token": "<pad>", "bos_token": "<bos>"},
            template=("<|turn>user\n", "<|image|>", "<turn|>\n", "<|turn>model\n", "", "<turn|>\n", "<bos>"),
            named_tokens={
                "boi_token": "<|image>",
                "eoi_token": "<image|>",
                "image_token": "<|image|>",
                "video_token": "<|video|>",
                "boa_token": "<|audio>",
                "eoa_token": "<audio|>",
                "audio_token": "<|audio|>",
            },
            text={
                "hidden_size_per_layer_input": 8,
                "vocab_size_per_layer_input": 320,
                "num_kv_shared_layers": 0,
                "sliding_window": 64,
            },
            vision={"patch_size": 4, "pooling_kernel_size": 2, "position_embedding_size": 64},
            token_ids={
                "boi_token_id": "<|image>",
                "eoi_token_id": "<image|>",
                "image_token_id": "<|image|>",
                "video_token_id": "<|video|>",
                "boa_token_id": "<|audio>",
                "eoa_token_index": "<audio|>",
                "audio_token_id": "<|audio|>",
            },
            image_processor={"patch_size": 4, "pooling_kernel_size": 2, "max_soft_tokens": 70},
            processor={"image_seq_length": 70},
            extra_parts={"feature_extractor": "Gemma4AudioFeatureExtractor"},
        ),
    }
)
