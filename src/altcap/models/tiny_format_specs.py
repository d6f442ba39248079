"""Tiny checkpoints of the model types whose text is no chat (`tiny_chat.build_tiny_chat_model`):
PaliGemma's prefix/suffix and Florence-2's task prompts (a BART encoder-decoder), so their specs
carry no template."""

from __future__ import annotations

from altcap.models.tiny_chat_specs import SIGLIP_SIZES, TinySpec

_BART_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<image>")
OWN_FORMAT_SPECS: dict[str, TinySpec] = {
    "paligemma": TinySpec(
        specials=("<pad>", "<eos>", "<bos>", "<unk>", "<image>"),
        roles={"eos_token": "<eos>", "pad_token": "<pad>", "bos_token": "<bos>"},
        template=None,
        named_tokens={"image_token": "<image>"},
        text={"head_dim": 16},
        vision={**SIGLIP_SIZES, "projection_dim": 32},
        top={"projection_dim": 32, "hidden_size": 32},
        token_ids={"image_token_index": "<image>"},
        image_processor={"size": {"height": 32, "width": 32}, "image_seq_length": 16},
    ),
    "florence2": TinySpec(
        specials=_BART_SPECIALS,
        roles={"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
        template=None,
        named_tokens={"image_token": "<image>"},
        text={"decoder_start_token_id": 2, "forced_eos_token_id": 2},
        vision={
            "depths": [1, 1, 1, 1],
            "embed_dim": [8, 16, 16, 32],
            "num_heads": [1, 1, 1, 2],
            "num_groups": [1, 1, 1, 2],
            "window_size": 2,
            "projection_dim": 32,
        },
        token_ids={"image_token_id": "<image>"},
        image_processor={
            "size": {"height": 64, "width": 64},
            "crop_size": {"height": 64, "width": 64},
            "image_seq_length": 5,
        },
    ),
}
