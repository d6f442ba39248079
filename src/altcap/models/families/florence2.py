"""Florence-2 (e.g. florence-community/Florence-2-base; transformers' native class, no remote code).

An encoder-decoder: the encoder reads the image and the instruction (a task token such as
`<MORE_DETAILED_CAPTION>`, which the processor expands, or free text); the decoder writes the
caption, so labels are the caption tokens + `</s>` and generation echoes no prompt.
"""

from typing import Any

import torch

from altcap.models.chat_vlm import TextFormat, register_chat_vlm
from altcap.models.text_inputs import IGNORE_INDEX, pad_sequences


def build_inputs(
    processor: Any, images: list[Any], instructions: list[str], captions: list[str] | None
) -> dict[str, Any]:
    """Encoder inputs from image + instruction; with captions, decoder labels (caption + EOS)."""
    inputs = dict(processor(images=images, text=instructions, padding=True, return_tensors="pt"))
    if captions is not None:
        tokenizer = processor.tokenizer
        rows = [
            tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in captions
        ]
        labels, _ = pad_sequences(rows, IGNORE_INDEX)
        inputs["labels"] = labels
    return inputs


def _no_prompt(inputs: dict[str, torch.Tensor]) -> int:
    return 0  # the decoder starts from its start token; nothing of the prompt is echoed


# No feature cache: in transformers 5.25 only Florence-2's `generate` takes precomputed image
# features (`mm_encoder_outputs`); its training forward always runs the vision tower.
FAMILY = register_chat_vlm(
    "florence2",
    text_format=TextFormat(build_inputs, _no_prompt, default_instruction="<MORE_DETAILED_CAPTION>"),
    vision_parts=None,
    graphed_decoding=False,  # an encoder-decoder LM: graphed_chat_decoding replays decoder-only steps
    graphed_training=False,  # as does graphed_chat_training
)
