"""Tiny random models of every family, built offline and saved like a hub checkpoint.

Tests and CPU benchmarks cannot download weights, so `build_tiny_model` builds each family from
configs (hidden sizes 32-64, 1-2 layers, 32-64 px images) with its real processor class and
`save_pretrained`s both to a folder: `from_pretrained(folder)` is then exactly the path users take
with hub ids. Tokenizers are byte-level BPE trained on a fixed caption corpus, so every string
round-trips through encode/decode exactly and no token is ever unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipProcessor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

TINY_IMAGE_SIZE_PX = 32
TINY_PATCH_SIZE_PX = 8
TINY_NUM_QUERY_TOKENS = 4
TINY_VOCAB_SIZE = 400
IMAGE_TOKEN = "<image>"

# Plain captions the tokenizers are trained on; tests caption with these so every one round-trips.
TINY_CAPTIONS = (
    "a dog runs across the green grass in a park",
    "a black and white dog is jumping over a fence",
    "two children are playing on the beach near the water",
    "a man in a red shirt is riding a bicycle down the street",
    "a woman sits on a bench and reads a book",
    "a group of people stand in front of a building",
    "a cat sleeps on a brown couch next to a window",
    "the sign says open in large white letters",
    "a little girl in a pink dress smiles at the camera",
    "a brown horse stands in a field under a blue sky",
    "people walk along a busy city sidewalk at night",
    "a person climbs a rock wall while another person watches",
    "a boy throws a ball to a dog on the snow",
    "an image of a yellow car parked beside a tree",
    "a picture of a kitchen with a table and two chairs",
)
_CORPUS = (
    "Provide a detailed caption for this photo.",
    *TINY_CAPTIONS,
    "Question: what is in the image? Answer: a bird on a branch",
    "USER: describe the photo. ASSISTANT: a plate of food with rice and vegetables",
    "[INST] What do you see? [/INST] a skier goes down a snowy mountain",
)

# Per-tokenizer special tokens and how a single sequence is wrapped, mirroring the real
# checkpoints' tokenizers (BERT for BLIP, OPT/GPT-2, T5, Llama/Mistral).
_STYLES: dict[str, dict[str, Any]] = {
    "bert": {
        "specials": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"],
        "template": "[CLS] $A [SEP]",
        "roles": {
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "mask_token": "[MASK]",
            "bos_token": "[DEC]",
        },
    },
    "opt": {
        "specials": ["<pad>", "</s>", "<unk>"],
        "template": "</s> $A",
        "roles": {"pad_token": "<pad>", "bos_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>"},
    },
    "t5": {
        "specials": ["<pad>", "</s>", "<unk>"],
        "template": "$A </s>",
        "roles": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
    },
    "llama": {
        "specials": ["<unk>", "<s>", "</s>", "<pad>"],
        "template": "<s> $A",
        "roles": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"},
    },
}

# Mistral-instruct style, as in llava-hf/llava-v1.6-mistral-7b-hf: "[INST] <image>\nprompt [/INST]".
_LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST] "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %} [/INST]"
    "{% else %}{% for item in message['content'] %}{{ ' ' + item['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}"
)


def build_tiny_tokenizer(
    style: str,
    extra_specials: tuple[str, ...] = (),
    corpus: Sequence[str] | None = None,
    vocab_size: int = TINY_VOCAB_SIZE,
) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer in the special-token style of a real checkpoint.

    Args:
        style: "bert", "opt", "t5" or "llama".
        extra_specials: more special tokens (e.g. the image placeholder) appended after training.
        corpus: texts to learn merges from; None = the built-in test sentences. Benchmarks pass real
            captions with a larger vocabulary so sequences are as long as a real tokenizer's.
        vocab_size: BPE vocabulary size.

    Returns:
        A fast tokenizer; ids are the same on every call (BPE training is deterministic).
    """
    spec = _STYLES[style]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=spec["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS if corpus is None else corpus, trainer=trainer)
    words = spec["template"].split()
    special_pairs = [(w, tokenizer.token_to_id(w)) for w in words if w != "$A"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=spec["template"], pair=spec["template"] + " $B", special_tokens=special_pairs
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **spec["roles"])
    if extra_specials:
        wrapped.add_special_tokens({"additional_special_tokens": list(extra_specials)})
    return wrapped


def _text_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if tokenizer.bos_token_id is not None:
        ids["bos_token_id"] = tokenizer.bos_token_id
    if tokenizer.eos_token_id is not None:
        ids["eos_token_id"] = tokenizer.eos_token_id
    return ids


def _vision_config(hidden_size: int = 32) -> dict[str, Any]:
    return {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": TINY_IMAGE_SIZE_PX,
        "patch_size": TINY_PATCH_SIZE_PX,
    }


def _qformer_config(vision_hidden: int) -> dict[str, Any]:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "encoder_hidden_size": vision_hidden,
        "vocab_size": 400,
        "max_position_embeddings": 64,
    }


def _decoder_config(variant: str, tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    ids = _text_ids(tokenizer)
    if variant == "opt":
        return {
            "model_type": "opt",
            "hidden_size": 32,
            "ffn_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "word_embed_proj_dim": 32,
            "max_position_embeddings": 128,
            **ids,
        }
    if variant == "t5":
        return {
            "model_type": "t5",
            "d_model": 32,
            "d_kv": 16,
            "d_ff": 64,
            "num_layers": 1,
            "num_decoder_layers": 1,
            "num_heads": 2,
            "decoder_start_token_id": tokenizer.pad_token_id,
            "feed_forward_proj": "gated-gelu",
            "tie_word_embeddings": False,
            **ids,
        }
    if variant in {"llama", "mistral"}:
        return {
            "model_type": variant,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "tie_word_embeddings": False,
            **ids,
        }
    raise ValueError(f"unknown tiny decoder variant {variant!r}; use opt, t5, llama or mistral")


def _blip_image_processor() -> BlipImageProcessorPil:
    size = {"height": TINY_IMAGE_SIZE_PX, "width": TINY_IMAGE_SIZE_PX}
    return BlipImageProcessorPil(size=size)


def _build_blip(variant: str | None) -> tuple[Any, Any]:
    tokenizer = build_tiny_tokenizer("bert")
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "encoder_hidden_size": 32,
        "max_position_embeddings": 128,
        **_text_ids(tokenizer),
        "sep_token_id": tokenizer.sep_token_id,
    }
    config = BlipConfig(text_config=text, vision_config=_vision_config(), projection_dim=32)
    processor = BlipProcessor(image_processor=_blip_image_processor(), tokenizer=tokenizer)
    return BlipForConditionalGeneration(config), processor


def _query_token_parts(variant: str, lm_style: str) -> tuple[PreTrainedTokenizerFast, dict[str, Any]]:
    # BLIP-2 and InstructBLIP share the vision tower + Q-Former + LM layout; only the LM differs.
    tokenizer = build_tiny_tokenizer("t5" if variant == "t5" else lm_style, (IMAGE_TOKEN,))
    config = {
        "vision_config": _vision_config(),
        "qformer_config": _qformer_config(32),
        "text_config": _decoder_config(variant, tokenizer),
        "num_query_tokens": TINY_NUM_QUERY_TOKENS,
        "image_token_index": tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    }
    return tokenizer, config


def _build_blip2(variant: str | None) -> tuple[Any, Any]:
    tokenizer, config = _query_token_parts(variant or "opt", "opt")
    processor = Blip2Processor(
        image_processor=_blip_image_processor(), tokenizer=tokenizer, num_query_tokens=TINY_NUM_QUERY_TOKENS
    )
    return Blip2ForConditionalGeneration(Blip2Config(**config)), processor


def _build_instructblip(variant: str | None) -> tuple[Any, Any]:
    tokenizer, config = _query_token_parts(variant or "llama", "llama")
    processor = InstructBlipProcessor(
        image_processor=_blip_image_processor(),
        tokenizer=tokenizer,
        qformer_tokenizer=build_tiny_tokenizer("bert"),
        num_query_tokens=TINY_NUM_QUERY_TOKENS,
    )
    return InstructBlipForConditionalGeneration(InstructBlipConfig(**config)), processor


def _build_llava_next(variant: str | None) -> tuple[Any, Any]:
    tokenizer = build_tiny_tokenizer("llama", (IMAGE_TOKEN,))
    # Pinpoints are multiples of the base resolution so the any-resolution tiling really tiles.
    base = TINY_IMAGE_SIZE_PX
    pinpoints = [[base, 2 * base], [2 * base, base], [2 * base, 2 * base]]
    vision = {**_vision_config(), "model_type": "clip_vision_model", "projection_dim": 32}
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=_decoder_config(variant or "mistral", tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(base // TINY_PATCH_SIZE_PX) ** 2,
    )
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": base},
        crop_size={"height": base, "width": base},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=TINY_PATCH_SIZE_PX,
        vision_feature_select_strategy="default",
        chat_template=_LLAVA_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    return LlavaNextForConditionalGeneration(config), processor


_BUILDERS: dict[str, Callable[[str | None], tuple[Any, Any]]] = {
    "blip": _build_blip,
    "blip2": _build_blip2,
    "instructblip": _build_instructblip,
    "llava_next": _build_llava_next,
}


def build_tiny_model(family: str, folder: Path, seed: int = 0, variant: str | None = None) -> Path:
    """Build a tiny random model of one family and save model + processor to `folder`.

    Args:
        family: "blip", "blip2", "instructblip" or "llava_next".
        folder: where `save_pretrained` writes; created if missing.
        seed: torch seed for the random weights (same seed, same weights).
        variant: decoder for blip2 ("opt" default, "t5") and instructblip ("llama" default, "t5");
            llava_next accepts "mistral" (default) or "llama"; ignored for blip.

    Returns:
        `folder`, ready for `from_pretrained(folder)`.
    """
    if family not in _BUILDERS:
        raise ValueError(
            f"no tiny builder for family {family!r}; choose one of {', '.join(sorted(_BUILDERS))}"
        )
    torch.manual_seed(seed)
    model, processor = _BUILDERS[family](variant)
    model.eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_altcap_mini(folder: Path, seed: int = 0) -> Path:
    """A tiny random altcap-mini (32 px, 16 visual tokens, 2-layer llama) saved for fast pipeline tests.

    Args:
        folder: a new or empty folder.
        seed: torch seed for all random weights.

    Returns:
        `folder`, loadable with `altcap_mini.load(folder)`.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from altcap.models.families.altcap_mini import AltcapMini, save_altcap_mini
    from altcap.models.mini_config import AltcapMiniConfig
    from altcap.models.mini_tokens import TINY_CHAT_TEMPLATE, build_processor

    torch.manual_seed(seed)
    config = AltcapMiniConfig(
        image_size_px=32, vision_stages=[[1, 3, 1, 1, 8], [1, 3, 2, 2, 16], [1, 3, 2, 2, 16]],
        vision_stem_channels=8, vision_head_channels=32, vision_source="folder", language_source="folder",
        text_hidden_size=32,
    )
    tokenizer = build_tiny_tokenizer("llama", (config.image_token,))
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    special_ids = {f"{n}_token_id": getattr(tokenizer, f"{n}_token_id") for n in ("pad", "bos", "eos")}
    language_model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **special_ids,
    ))
    model = AltcapMini(config, config.build_vision(), language_model,
                       tokenizer.convert_tokens_to_ids(config.image_token))
    return save_altcap_mini(model.eval(), build_processor(config, tokenizer), folder)
