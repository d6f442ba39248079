"""A chat VLM's text inputs without running its image processor: the tokenizer's ids of each row,
with the image placeholder replaced by the tokens the processor gives an image of that size.

Why: training from the feature cache needs only the text tensors, yet the processor makes them by
resizing, tiling and normalising every image first, every step, in the loader workers: for
SmolVLM2 at 448 px, 135 ms a batch of 16 Flickr8k images on one core, against 8.8 ms spliced; on an
H100 the steps waited for batches about 1.1 s of 48 (docs/benchmarks.md, session 19). What an image expands to
(how many tokens, which tile markers, Qwen's `image_grid_thw`) depends only on its size and the
processor's settings, never on its pixels, so each size is processed once, on a blank image, and
spliced into every row of that size.

Checked, not assumed: each splice is read off one row built both ways, and the first batch of
each process is also built the slow way (blank images of the same sizes) and compared key by key.
Any difference turns the splices off for that processor, said once in the log; a row whose
placeholder is not found once is built the slow way.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from altcap.models.chat_features import without_pixels
from altcap.models.text_inputs import read_image_size

logger = logging.getLogger(__name__)

# run(processor, images, texts, padding_side) -> the processor's tensors for a batch.
RunProcessor = Callable[[Any, list[Any], list[str], str], dict[str, Any]]
_TEXT_KEYS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class ImageSplice:
    """What the processor puts in a row in place of one image of one size.

    `placeholder`: the ids the tokenizer gives the image's place in the text; `expansion`: the ids
    the processor puts there; `token_values`: other per-token tensors (token types) as (values over
    the expansion, value everywhere else); `image_values`: per-image tensors (`image_grid_thw`).
    """

    placeholder: tuple[int, ...]
    expansion: tuple[int, ...]
    token_values: dict[str, tuple[torch.Tensor, int]]
    image_values: dict[str, torch.Tensor]


@dataclass
class _SpliceState:
    splices: dict[tuple, ImageSplice | None] = field(default_factory=dict)
    checked: bool = False
    off: bool = False


# One state per processor object (each loader worker process has its own copy).
_STATES: weakref.WeakKeyDictionary[Any, _SpliceState] = weakref.WeakKeyDictionary()


def build_without_pixels(
    processor: Any,
    images: Sequence[Any],
    texts: list[str],
    instructions: list[str],
    side: str,
    run: RunProcessor,
) -> dict[str, Any]:
    """The processor's tensors for these rows minus what only the vision tower reads.

    Args:
        processor: the chat VLM's processor.
        images: one per row: a PIL image, an image file (only its header is read) or (height, width).
        texts: the rows' full text, each with one image placeholder as the chat template writes it.
        instructions: each row's instruction (the text right after its image: part of a splice's key).
        side: padding side ("right" for training, "left" for generation).
        run: calls the processor on a batch (`chat_vlm._run_processor`).

    Returns:
        input_ids, attention_mask and the processor's other non-pixel tensors, equal to
        `run(...)` on the real images without its `pixel_*` entries.
    """
    sizes = [read_image_size(image) for image in images]
    state = _STATES.setdefault(processor, _SpliceState())
    rows = zip(sizes, instructions, texts, strict=True)
    splices = [] if state.off else [find_splice(state, processor, *row, run) for row in rows]
    found = bool(splices) and all(splice is not None for splice in splices)
    spliced = assemble_rows(processor, texts, splices, side) if found else None  # type: ignore[arg-type]
    if spliced is not None and state.checked:
        return spliced
    expected = run_on_blank_images(processor, sizes, texts, side, run)
    if spliced is not None:  # the first spliced batch of this process: compared before it is trusted
        state.checked = True
        if (difference := describe_difference(spliced, expected)) is None:
            return spliced
        state.off = True
        logger.info(
            "%s: image tokens spliced from the tokenizer differ from the processor's (%s); "
            "text inputs are built by the processor on blank images of each size",
            type(processor).__name__,
            difference,
        )
    return expected


def run_on_blank_images(
    processor: Any, sizes: list[tuple[int, int]], texts: list[str], side: str, run: RunProcessor
) -> dict[str, Any]:
    """The processor on blank images of the rows' sizes, without its pixel tensors (the text
    tensors depend on the sizes only, and a blank image needs no decoding)."""
    return without_pixels(run(processor, blank_images(sizes), texts, side))


def blank_images(images: Sequence[Any]) -> list[Any]:
    """Black RGB images the sizes of `images` (PIL images, image files or (height, width) pairs)."""
    from PIL import Image

    return [Image.new("RGB", (width, height)) for height, width in map(read_image_size, images)]


def find_splice(
    state: _SpliceState, processor: Any, size: tuple[int, int], instruction: str, text: str, run: RunProcessor
) -> ImageSplice | None:
    """The splice of an image of `size` before `instruction`, read off `text` on first use."""
    key = (size, instruction)
    if key not in state.splices:
        state.splices[key] = read_splice(processor, size, text, run)
    return state.splices[key]


def read_splice(processor: Any, size: tuple[int, int], text: str, run: RunProcessor) -> ImageSplice | None:
    """Compare one row's tokenizer ids with the processor's: the differing middle is the splice.

    Returns None where the difference is not one placeholder turned into an expansion (the text
    around the image tokenized differently), or where another tensor cannot be rebuilt from it.
    """
    full = run_on_blank_images(processor, [size], [text], "right", run)
    raw = processor.tokenizer([text], add_special_tokens=False)["input_ids"][0]
    ids = full["input_ids"][0].tolist()
    start = common_prefix_length(raw, ids)
    if start == len(raw) == len(ids):  # a small image stays one token: find it by its id
        token_id = getattr(processor, "image_token_id", None)
        if token_id is None or raw.count(token_id) != 1:
            return None
        start, end = raw.index(token_id), len(raw) - raw.index(token_id) - 1
    else:
        end = common_prefix_length(raw[start:][::-1], ids[start:][::-1])
    if start + end == len(raw):  # the image became more copies of its own token (Qwen's <|image_pad|>)
        start -= 1
    placeholder, expansion = tuple(raw[start : len(raw) - end]), tuple(ids[start : len(ids) - end])
    if start < 0 or not placeholder or len(occurrences(raw, placeholder)) != 1:
        return None
    token_values, image_values = {}, {}
    for name, value in full.items():
        if name in _TEXT_KEYS:
            continue
        if not isinstance(value, torch.Tensor):
            return None
        if value.shape == (1, len(ids)):  # per token: constant outside the image's tokens
            row = value[0]
            outside = torch.cat([row[:start], row[len(ids) - end :]])
            if outside.numel() and not bool((outside == outside[0]).all()):
                return None
            fill = int(outside[0]) if outside.numel() else 0
            token_values[name] = (row[start : len(ids) - end].clone(), fill)
        else:
            image_values[name] = value.clone()
    return ImageSplice(placeholder, expansion, token_values, image_values)


def assemble_rows(
    processor: Any, texts: list[str], splices: list[ImageSplice], side: str
) -> dict[str, Any] | None:
    """The batch's tensors from the tokenizer's ids and each row's splice, padded on `side`;
    None when a row's placeholder is not found exactly once."""
    tokenizer = processor.tokenizer
    raw_rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows: list[list[int]] = []
    token_rows: dict[str, list[torch.Tensor]] = {name: [] for name in splices[0].token_values}
    for raw, splice in zip(raw_rows, splices, strict=True):
        found = occurrences(raw, splice.placeholder)
        if len(found) != 1 or splice.token_values.keys() != token_rows.keys():
            return None
        at = found[0]
        rows.append([*raw[:at], *splice.expansion, *raw[at + len(splice.placeholder) :]])
        for name, (values, fill) in splice.token_values.items():
            row = torch.full((len(rows[-1]),), fill, dtype=values.dtype)
            row[at : at + len(values)] = values
            token_rows[name].append(row)
    longest = max(len(row) for row in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = {
        "input_ids": torch.tensor([pad(row, longest, pad_id, side) for row in rows]),
        "attention_mask": torch.tensor([pad([1] * len(row), longest, 0, side) for row in rows]),
    }
    for name, per_row in token_rows.items():
        batch[name] = torch.stack([pad_tensor(row, longest, side) for row in per_row])
    for name in splices[0].image_values:
        batch[name] = torch.cat([splice.image_values[name] for splice in splices])
    return batch


def describe_difference(spliced: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """None when both batches hold the same tensors, else which key differs."""
    if spliced.keys() != expected.keys():
        return f"keys {sorted(spliced)} against {sorted(expected)}"
    for name, value in expected.items():
        other = spliced[name]
        tensors = isinstance(value, torch.Tensor) and isinstance(other, torch.Tensor)
        if not (tensors and value.dtype == other.dtype and torch.equal(value, other)):
            return name
    return None


def common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading items the two sequences share."""
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def occurrences(items: Sequence[int], part: Sequence[int]) -> list[int]:
    """Where `part` starts in `items`, every (possibly overlapping) occurrence."""
    width, part = len(part), tuple(part)
    return [at for at in range(len(items) - width + 1) if tuple(items[at : at + width]) == part]


def pad(row: list[int], length: int, value: int, side: str) -> list[int]:
    """`row` padded with `value` to `length`, on the right or the left."""
    filler = [value] * (length - len(row))
    return [*row, *filler] if side == "right" else [*filler, *row]


def pad_tensor(row: torch.Tensor, length: int, side: str) -> torch.Tensor:
    """A 1-D tensor zero-padded to `length` on `side`."""
    filler = row.new_zeros(length - row.shape[0])
    return torch.cat([row, filler] if side == "right" else [filler, row])
