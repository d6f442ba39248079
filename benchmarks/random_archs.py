"""Real architectures with random weights, saved as `from_pretrained` folders for the GPU benchmarks.

There is no model hub here. Compute and memory do not depend on weight values, so a model built
from the published config and saved locally is timed exactly as the real checkpoint would be when
every caption is forced to the same length. Sizes come from the checkpoints' config.json; the
embedding tables keep the real vocabulary size, while the tokenizer is altcap's tiny test one (its
ids all fall inside the real vocabulary), so the LM head costs what the real one does. Given a
corpus (e.g. the Flickr8k captions), the tokenizer learns an 8k-entry BPE vocabulary from it, so
prompts and captions are about as many tokens long as with the real tokenizers; the built-in test
vocabulary (400 entries) splits them ~2.5x finer, which inflates sequence length, FLOPs and memory.

    from benchmarks.random_archs import build_random_arch
    folder = build_random_arch("blip2-flan-t5-xl", Path("/root/models/b2t5"), "cuda")

    python -m benchmarks.random_archs llava-1.6-mistral-7b /root/llava-random --device cuda
    python -m benchmarks.random_archs qwen2.5-vl-3b-instruct /root/qwen25-random --device cuda
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.chat_archs import CHAT_ARCHS, build_chat_arch

VIT_G_224 = {
    "hidden_size": 1408,
    "intermediate_size": 6144,
    "num_hidden_layers": 39,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
}
BLIP2_QFORMER = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "encoder_hidden_size": 1408,
}
OPT_2_7B = {
    "model_type": "opt",
    "hidden_size": 2560,
    "ffn_dim": 10240,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "word_embed_proj_dim": 2560,
    "max_position_embeddings": 2048,
    "vocab_size": 50272,
}
FLAN_T5_XL = {
    "model_type": "t5",
    "d_model": 2048,
    "d_ff": 5120,
    "d_kv": 64,
    "num_heads": 32,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
    "relative_attention_num_buckets": 32,
    "vocab_size": 32128,
}
CLIP_VIT_L_336 = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}
MISTRAL_7B = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "vocab_size": 32064,
}
LLAVA_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
# The chat VLMs of the shipped recipes live in `benchmarks.chat_archs` (same folders, same entry).
ARCHS = ("blip2-opt-2.7b", "blip2-flan-t5-xl", "llava-1.6-mistral-7b", *CHAT_ARCHS)


def _token_ids(tokenizer: Any) -> dict[str, Any]:
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


BENCHMARK_VOCAB_SIZE = 8000


def _tokenizer(style: str, corpus: Sequence[str] | None) -> Any:
    from altcap.models.tiny import IMAGE_TOKEN, build_tiny_tokenizer

    if corpus is None:
        return build_tiny_tokenizer(style, (IMAGE_TOKEN,))
    return build_tiny_tokenizer(style, (IMAGE_TOKEN,), corpus=corpus, vocab_size=BENCHMARK_VOCAB_SIZE)


def _build_blip2(name: str, corpus: Sequence[str] | None = None) -> tuple[Any, Any]:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from altcap.models.tiny import IMAGE_TOKEN

    t5 = name == "blip2-flan-t5-xl"
    tokenizer = _tokenizer("t5" if t5 else "opt", corpus)
    text = {**(FLAN_T5_XL if t5 else OPT_2_7B), **_token_ids(tokenizer)}
    if t5:
        text["decoder_start_token_id"] = tokenizer.pad_token_id
    config = Blip2Config(
        vision_config=VIT_G_224,
        qformer_config=BLIP2_QFORMER,
        text_config=text,
        num_query_tokens=32,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    size = {"height": VIT_G_224["image_size"], "width": VIT_G_224["image_size"]}
    processor = Blip2Processor(BlipImageProcessorPil(size=size), tokenizer, num_query_tokens=32)
    return config, processor, Blip2ForConditionalGeneration


def _build_llava_next(corpus: Sequence[str] | None = None) -> tuple[Any, Any]:
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    from altcap.models.tiny import _LLAVA_CHAT_TEMPLATE, IMAGE_TOKEN

    tokenizer = _tokenizer("llama", corpus)
    config = LlavaNextConfig(
        vision_config=CLIP_VIT_L_336,
        text_config={**MISTRAL_7B, **_token_ids(tokenizer)},
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=LLAVA_PINPOINTS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=576,
    )
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=LLAVA_PINPOINTS,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=_LLAVA_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    return config, processor, LlavaNextForConditionalGeneration


def build_random_arch(name: str, folder: Path, device: str, corpus: Sequence[str] | None = None) -> Path:
    """Build `name` with random bf16 weights on `device`, save model + processor to `folder`.

    Args:
        name: one of ARCHS.
        folder: output folder (a `from_pretrained` folder afterwards).
        device: where to initialise ("cuda" is minutes faster than "cpu" for the 7B model).
        corpus: texts the tokenizer learns its vocabulary from; None = altcap's tiny test tokenizer
            (chat VLMs: the chat benchmarks' caption corpus).

    Returns:
        `folder`.
    """
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHS)}")
    if name in CHAT_ARCHS:
        from benchmarks.chat_data import build_corpus

        return build_chat_arch(name, folder, device, corpus if corpus is not None else build_corpus())
    if name.startswith("llava"):
        config, processor, model_class = _build_llava_next(corpus)
    else:
        config, processor, model_class = _build_blip2(name, corpus)
    torch.manual_seed(0)
    with torch.device(device):
        model = model_class(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return folder


def main(argv: list[str] | None = None) -> Path:
    """Build one architecture into a folder from the command line; returns the folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=ARCHS)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--flickr8k", type=Path, help="Flickr8k folder: the tokenizer learns its vocabulary from the captions"
    )
    args = parser.parse_args(argv)
    corpus = None
    if args.flickr8k is not None:
        from benchmarks.train_manifests import read_flickr_captions

        corpus = read_flickr_captions(args.flickr8k)
    folder = build_random_arch(args.name, args.folder, args.device, corpus)
    print(folder)
    return folder


if __name__ == "__main__":
    main()
