"""PaliGemma / PaliGemma 2 (e.g. google/paligemma2-3b-pt-224; gated: accept the licence, then
`hf auth login`).

No chat template: the processor writes `<image>... <bos>prefix\n` and appends the caption as a
suffix with `<eos>`, marking it with token type 1 (the prefix attends both ways); its own labels
already cover only the suffix. Pretrained checkpoints caption with the prefix "caption en".
"""

from typing import Any

from altcap.models.chat_vlm import TextFormat, decoder_prompt_length, fit_to_max_length, register_chat_vlm


def build_inputs(
    processor: Any, images: list[Any], instructions: list[str], captions: list[str] | None
) -> dict[str, Any]:
    """Prefix = instruction, suffix = caption (+ EOS, labelled); left-padded prefixes to generate."""
    common = {"images": images, "text": instructions, "padding": True, "return_tensors": "pt"}
    if captions is None:
        return dict(processor(**common, padding_side="left"))
    inputs = dict(processor(**common, suffix=captions, padding_side="right"))
    tails = (inputs.pop("labels") != -100).sum(dim=1).tolist()
    max_length = processor.tokenizer.model_max_length
    return fit_to_max_length(inputs, tails, max_length if max_length < 10**7 else None, captions)


FAMILY = register_chat_vlm(
    "paligemma",
    text_format=TextFormat(build_inputs, decoder_prompt_length, default_instruction="caption en"),
    # PaliGemma's forward rebuilds the mask generate built for a static cache and fails on it
    # (transformers 5.25, Gemma 2 text models): no CUDA-graph decoding.
    graphed_decoding=False,
    graphed_training=False,  # its language model gets a 4-D prefix-LM mask
)
