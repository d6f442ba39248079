"""The token helpers the family modules share: training rows and decoding of generated ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from altcap.data.images import load_image_rgb, read_upright_size
from altcap.models.text_inputs import IGNORE_INDEX, build_caption_batch, generate_new_text, read_image_size
from altcap.models.tiny import TINY_CAPTIONS, build_tiny_tokenizer


def test_caption_batch_learns_only_caption_and_end() -> None:
    tokenizer = build_tiny_tokenizer("llama")
    prefix = [tokenizer.bos_token_id, 7, 7]
    prompts = ["Provide a detailed caption for this photo.", ""]
    captions = [TINY_CAPTIONS[0], TINY_CAPTIONS[3]]
    batch = build_caption_batch(tokenizer, prefix, prompts, captions, tokenizer.eos_token_id, 99)
    for row, (prompt, caption) in enumerate(zip(prompts, captions, strict=True)):
        length = int(batch["attention_mask"][row].sum())
        ids, labels = batch["input_ids"][row, :length], batch["labels"][row, :length]
        learned = labels[labels != IGNORE_INDEX]
        assert tokenizer.decode(learned[:-1]).strip() == caption
        assert learned[-1] == tokenizer.eos_token_id
        assert ids[: len(prefix)].tolist() == prefix
        assert tokenizer.decode(ids[len(prefix) : length - len(learned)]) == prompt
        assert (labels[: length - len(learned)] == IGNORE_INDEX).all()
        # Right padding: pad ids after the real tokens, never learned.
        assert (batch["input_ids"][row, length:] == 99).all()
        assert (batch["labels"][row, length:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][0].sum() > batch["attention_mask"][1].sum()


class _EchoModel:
    """Returns each prompt row followed by fixed new ids, as a decoder-only `generate` does."""

    def __init__(self, new_ids: list[int]):
        self.new_ids = new_ids
        self.seen: dict[str, Any] = {}

    def generate(self, **kwargs: Any) -> torch.Tensor:
        self.seen = kwargs
        prompt = kwargs["input_ids"]
        new = torch.tensor([self.new_ids] * prompt.shape[0])
        return torch.cat([prompt, new], dim=1)


def test_generate_new_text_drops_labels_and_decodes_after_prompt() -> None:
    tokenizer = build_tiny_tokenizer("llama")
    caption_ids = tokenizer(TINY_CAPTIONS[1], add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(" " + TINY_CAPTIONS[2], add_special_tokens=False)["input_ids"]
    inputs = {"input_ids": torch.tensor([prompt_ids]), "labels": torch.tensor([prompt_ids])}
    model = _EchoModel([*caption_ids, tokenizer.eos_token_id])
    texts = generate_new_text(model, tokenizer, inputs, {"max_new_tokens": 9}, len(prompt_ids))
    assert texts == [TINY_CAPTIONS[1]]
    assert "labels" not in model.seen and model.seen["max_new_tokens"] == 9


@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_size_of_a_file_follows_its_exif_orientation(tmp_path: Path, orientation: int) -> None:
    """LLaVA-NeXT's cached-feature token count reads this size: it must be the loaded image's."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"phone-{orientation}.jpg"
    Image.new("RGB", (40, 20), (10, 200, 10)).save(path, exif=exif)
    width, height = load_image_rgb(path).size
    assert read_image_size(path) == (height, width) == read_upright_size(path)[::-1]
    assert read_image_size(path) == ((40, 20) if orientation >= 5 else (20, 40))
