"""Tiny random chat VLMs of every chat-VLM model type, built offline and saved like a hub checkpoint.

Each model type gets a `TinySpec`: its special tokens, a chat template shaped like the real
checkpoint's (same turn markers and end-of-turn token), tiny config sizes and processor settings.
`build_tiny_chat_model` trains a byte-level BPE tokenizer on a fixed corpus, builds the config with
`AutoConfig.for_model`, seeds the weights and `save_pretrained`s model + processor, so tests load
them with `from_pretrained(folder)` exactly as users load hub ids. The processor is saved without
a video processor (none can be built without torchvision), as `models.processors` loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedTokenizerFast

from altcap.models.processors import without_video
from altcap.models.tiny import _CORPUS
from altcap.models.tiny_chat_specs import CHAT_TEMPLATE_SPECS, TinySpec
from altcap.models.tiny_format_specs import OWN_FORMAT_SPECS

# Every chat-VLM model type a tiny checkpoint can be built of.
TINY_SPECS: dict[str, TinySpec] = {**CHAT_TEMPLATE_SPECS, **OWN_FORMAT_SPECS}
TINY_VOCAB_SIZE = 320
_ROLE_WORDS = ("user", "assistant", "model", "User:", "Assistant:", "system", "USER:", "ASSISTANT:")

# Sizes every tiny text / vision config gets where the config class has the field.
_TEXT_SIZES: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    # Wider than real models' 0.02: with 32-wide hidden states a 0.02 output head caps the logits
    # near zero, and the contract's LoRA training could not lower the loss.
    "initializer_range": 0.2,
    "init_std": 0.2,  # BART's name for it (Florence-2)
    "head_dim": 16,
    "max_position_embeddings": 1024,
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
}
_VISION_SIZES: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_heads": 2,
    "num_key_value_heads": 2,
    "depth": 1,
    "head_dim": 16,
}


def render_template(
    user_open: str,
    image: str,
    user_close: str,
    assistant_open: str,
    lead: str,
    assistant_close: str,
    bos: str,
) -> str:
    """A Jinja chat template: user turn (image + text), assistant turn, generation prompt."""
    return (
        bos
        + "{% for m in messages %}{% if m['role'] == 'user' %}"
        + user_open
        + "{% for c in m['content'] %}{% if c['type'] == 'image' %}"
        + image
        + "{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
        + user_close
        + "{% else %}"
        + assistant_open
        + "{% for c in m['content'] %}{{ '"
        + lead
        + "' + c['text'] }}{% endfor %}"
        + assistant_close
        + "{% endif %}{% endfor %}{% if add_generation_prompt %}"
        + assistant_open
        + "{% endif %}"
    )


def build_chat_tokenizer(
    spec: TinySpec, corpus: Sequence[str] | None = None, vocab_size: int = TINY_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Byte-level BPE with the spec's special tokens (no automatic BOS/EOS: chat templates write them).

    Args:
        spec: the tiny model's spec (special tokens, roles, named tokens).
        corpus: texts to learn merges from; None = the test corpus and the role words.
        vocab_size: BPE vocabulary size.

    Returns:
        The fast tokenizer.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([*_CORPUS, *_ROLE_WORDS] if corpus is None else corpus, trainer=trainer)
    # No special tokens added; a pair's second text gets type id 1 (PaliGemma's suffix).
    tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A:0 $B:1")
    named = {"extra_special_tokens": spec.named_tokens} if spec.named_tokens else {}
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **spec.roles, **named)


def _fit_to_config(sizes: dict[str, Any], default_config: Any) -> dict[str, Any]:
    known = default_config.to_dict() if default_config is not None else {}
    return {key: value for key, value in sizes.items() if key in known}


def build_tiny_config(model_type: str, spec: TinySpec, tokenizer: Any) -> Any:
    """The model type's config with tiny sizes, the tokenizer's vocabulary and token ids."""
    defaults = AutoConfig.for_model(model_type)
    sub = getattr(defaults, "sub_configs", {})
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    ids.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text = {**_fit_to_config(_TEXT_SIZES, getattr(defaults, spec.text_key, None)), **ids, **spec.text}
    # Gemma 4 leaves its default vision_config unset: fit to the sub-config class's defaults, or its
    # full-size 150M-parameter tower would be built.
    vision_default = getattr(defaults, "vision_config", None)
    if vision_default is None and "vision_config" in sub:
        vision_default = sub["vision_config"]()
    vision = {**_fit_to_config(_VISION_SIZES, vision_default), **spec.vision}
    tokens = {key: tokenizer.convert_tokens_to_ids(token) for key, token in spec.token_ids.items()}
    parts = {spec.text_key: text, **({"vision_config": vision} if "vision_config" in sub else {})}
    top = _fit_to_config({"initializer_range": _TEXT_SIZES["initializer_range"]}, defaults)
    return AutoConfig.for_model(model_type, **parts, **tokens, **{**top, **spec.top})


def build_tiny_processor(model_type: str, spec: TinySpec, tokenizer: Any) -> Any:
    """The model type's processor (PIL image processor, no video processor) with the chat template."""
    from altcap.models.processors import _processor_class

    processor_class, backends = _processor_class(model_type)
    import transformers

    image_class = getattr(transformers, backends.get("pil") or backends["torchvision"])
    image_processor = image_class(**spec.image_processor)
    cls = without_video(processor_class)
    template = {"chat_template": render_template(*spec.template)} if spec.template else {}
    video = {"video_processor": None} if "video_processor" in processor_class.get_attributes() else {}
    video.update({part: getattr(transformers, name)() for part, name in spec.extra_parts.items()})
    return cls(image_processor=image_processor, tokenizer=tokenizer, **video, **template, **spec.processor)


def build_tiny_chat_model(model_type: str, folder: Path, seed: int = 0) -> Path:
    """Build, seed and save a tiny checkpoint (model + processor) of `model_type` into `folder`.

    Args:
        model_type: a key of `TINY_SPECS`.
        folder: where to save (created).
        seed: weight seed; the same seed gives identical weights.

    Returns:
        `folder`.
    """
    spec = TINY_SPECS[model_type]
    tokenizer = build_chat_tokenizer(spec)
    config = build_tiny_config(model_type, spec, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    with torch.no_grad():  # Gemma 3 starts its projector at zero: the tiny model would ignore images
        for name, param in model.named_parameters():
            if "projector" in name and param.dim() >= 2 and not param.any():
                param.normal_(std=0.2)
    model.eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    build_tiny_processor(model_type, spec, tokenizer).save_pretrained(folder)
    return folder
