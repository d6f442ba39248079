"""Synthetic data for the chat-VLM benchmarks: random photos and captions of realistic length.

Compute and memory depend on token counts, not on what the pixels or words are. Images are random
JPEGs (decoded like photos); captions are seeded draws from a fixed word list, and the benchmark
tokenizer (`chat_archs.build_tokenizer`) learns every word as one token, so a caption of N words
is about N tokens, as with the real tokenizers on plain English. The default 20-30 words put
Qwen2.5-VL-3B's training sequence (256 image tokens at 448 px) near issue #26's anchor of 310.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PROMPT = "Provide a detailed caption for this photo."
_WORD_TEXT = (
    "a an the two three several man woman boy girl child children dog dogs cat bird horse people "
    "person group crowd player team bike car bus street road sidewalk park field grass beach sand "
    "water ocean lake river snow mountain hill tree trees forest building house wall window door "
    "table chair bench couch bed kitchen room floor ball frisbee toy shirt jacket hat dress helmet "
    "red blue green yellow white black brown orange pink gray small large young old tall wet dry "
    "is are runs running walks walking sits sitting stands standing jumps jumping plays playing "
    "holds holding looks looking rides riding wears wearing throws catches climbs smiles carries "
    "in on at near next to behind under over with of and while into across through down up from "
    "front side top middle background left right bright dark sunny cloudy busy quiet open empty "
    "wooden metal stone glass colorful striped long short curly hair face hand hands arm arms leg"
)
_WORDS = tuple(_WORD_TEXT.split())
# Words per caption over Flickr8k's 40,455 captions (Flickr8k.token.txt, str.split after dropping
# the closing " ."): mean 10.9, median 10, 1-37. Counts only: no caption text is kept here.
FLICKR8K_WORD_COUNTS = {
    1: 2, 2: 25, 3: 178, 4: 469, 5: 1172, 6: 2620, 7: 3381, 8: 3845, 9: 4375, 10: 4469, 11: 4103,
    12: 3722, 13: 3112, 14: 2483, 15: 1854, 16: 1385, 17: 971, 18: 738, 19: 508, 20: 333, 21: 192,
    22: 178, 23: 113, 24: 68, 25: 59, 26: 31, 27: 22, 28: 12, 29: 11, 30: 8, 31: 7, 32: 2, 33: 5,
    34: 1, 37: 1,
}  # fmt: skip
# Caption length mixes the benchmarks can draw: a word range, or Flickr8k's own length histogram.
CAPTION_LENGTHS = ("20-30", "flickr8k")


def make_captions(
    count: int, seed: int = 0, min_words: int = 20, max_words: int = 30, lengths: str = "20-30"
) -> list[str]:
    """`count` seeded captions, each ending with a full stop.

    Args:
        count: captions to make.
        seed: the same seed gives the same captions.
        min_words, max_words: length range in words (inclusive), where `lengths` is "20-30".
        lengths: "20-30" (uniform in the range above) or "flickr8k" (word counts drawn from
            Flickr8k's length histogram, `FLICKR8K_WORD_COUNTS`).

    Returns:
        The captions.
    """
    if lengths not in CAPTION_LENGTHS:
        raise ValueError(f"caption lengths {lengths!r}: choose one of {CAPTION_LENGTHS}")
    rng = random.Random(seed)
    histogram = list(FLICKR8K_WORD_COUNTS), list(FLICKR8K_WORD_COUNTS.values())
    captions = []
    for _ in range(count):
        # Length, then words, per caption: the "20-30" captions are those earlier results used.
        if lengths == "flickr8k":
            words = rng.choices(histogram[0], weights=histogram[1])[0]
        else:
            words = rng.randint(min_words, max_words)
        captions.append(" ".join(rng.choices(_WORDS, k=words)).capitalize() + ".")
    return captions


def build_corpus() -> list[str]:
    """Texts the benchmark tokenizer learns from: the prompt, the role words, every word many times."""
    roles = ["user", "assistant", "model", "system", "User:", "Assistant:", "caption en"]
    return [PROMPT, *roles, *make_captions(2000, seed=12345)]


def write_random_images(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """`count` random-noise RGB JPEGs of `size` (width, height) in `folder` (kept if already there).

    Args:
        folder: where the images go (created).
        count: how many.
        size: (width, height) in pixels.
        seed: noise seed.

    Returns:
        The image paths, in order.
    """
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"img{index:05d}_{size[0]}x{size[1]}.jpg"
        if not path.is_file():
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def write_manifest(path: Path, images: list[Path], captions: list[str]) -> Path:
    """An altcap manifest: every image in the train split with its caption (absolute image paths).

    Args:
        path: the JSONL file to write.
        images: image files.
        captions: one caption per image.

    Returns:
        `path`.
    """
    rows = [
        {"image": str(image.resolve()), "captions": [caption], "split": "train"}
        for image, caption in zip(images, captions, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
