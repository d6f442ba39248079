"""altcap-mini's text side: the processor (chat prompt with image placeholders, tokenizer set-up),
which tokens end a caption, and the tiny test chat template. Split from families/altcap_mini.py, which
keeps the model, loading and the family functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from altcap.models import efficientnet_lite as effnet
from altcap.models.mini_config import AltcapMiniConfig

# A minimal chat template for the tiny random altcap-mini (its test tokenizer ships none).
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def caption_end_id(tokenizer: Any) -> int:
    """The token that ends a caption: the chat turn's end marker when the tokenizer has one.

    transformers versions read SmolLM2's GGUF with different `eos_token`s (<|endoftext|> or
    <|im_end|>), so a checkpoint trained on one would not stop on the other; fixing the end token to
    the chat template's own marker makes training and captioning agree everywhere.

    Args:
        tokenizer: the LM's tokenizer.

    Returns:
        The id of <|im_end|> when the tokenizer knows it, else its EOS id.
    """
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return im_end if im_end not in (None, tokenizer.unk_token_id) else tokenizer.eos_token_id


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Every id that ends a caption, so checkpoints trained under any GGUF reading stop cleanly.

    transformers 5.17 took <|im_start|> as SmolLM2's EOS, so checkpoints trained there end captions
    with it; it opens a new chat turn and can never belong inside a caption, so stopping on it is safe.

    Args:
        tokenizer: the LM's tokenizer.

    Returns:
        Sorted ids for `generate(eos_token_id=...)`.
    """
    ids = {caption_end_id(tokenizer), tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_start|>")}
    return sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id)


@dataclass
class AltcapMiniProcessor:
    """Image preprocessing (resize, normalise as the vision weights need) plus the chat tokenizer."""

    image_processor: Any
    tokenizer: Any
    image_token: str
    num_image_tokens: int

    def format_prompt(self, prompt: str) -> str:
        """The instruction as chat text, placeholders first, ending where the caption starts."""
        content = self.image_token * self.num_image_tokens + "\n" + prompt
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def build_processor(config: AltcapMiniConfig, tokenizer: Any) -> AltcapMiniProcessor:
    """A processor for `config`; adds the image placeholder to `tokenizer` and pads on the left, so
    batched generation continues every row from its own end.

    Args:
        config: the model's config (image size, normalisation, placeholder token).
        tokenizer: the LM's tokenizer, with a chat template.

    Returns:
        The processor.
    """
    if tokenizer.convert_tokens_to_ids(config.image_token) in (None, tokenizer.unk_token_id):
        tokenizer.add_special_tokens({"additional_special_tokens": [config.image_token]})
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        # transformers before 5.24 reads no pad token from the GGUF; padding is masked, so EOS serves.
        tokenizer.pad_token = tokenizer.eos_token
    image_processor = effnet.build_image_processor(config.image_size_px, config.image_mean, config.image_std)
    return AltcapMiniProcessor(image_processor, tokenizer, config.image_token, config.num_image_tokens)
