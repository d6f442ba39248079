"""Training examples from a manifest: one (image, prompt, caption) per reference caption.

Batches are built by the family's `build_inputs`, so prompt templates and label masking live in
one place per family. The sampler's order depends only on (seed, epoch), which is what makes a
resumed run see exactly the batches an uninterrupted one would.

No DistributedSampler: on N processes accelerate shards the batch sampler, giving process k the
k-th of every N consecutive micro-batches of this one order, so N x batch b sees exactly the
examples 1 x batch N*b does, step for step (tests/train/test_multiprocess.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from altcap.data.context import apply_context, read_context
from altcap.data.images import load_image_rgb
from altcap.data.manifest import ManifestRecord, read_manifest, resolve_image
from altcap.models.registry import DEFAULT_INSTRUCTION


@dataclass(frozen=True)
class Example:
    """One training pair; `image` is an absolute path. Per-image examples (SCST) also carry every
    reference caption of the image."""

    image: Path
    prompt: str | None
    caption: str
    references: tuple[str, ...] = ()


def resolve_record_prompt(
    record: ManifestRecord, default_prompt: str | None, context_template: str | None
) -> str | None:
    """A record's prompt: its own, else the default; with a context (and a template), the context
    put in front by the template, the family's default instruction standing in for a missing one.

    Args:
        record: the manifest record.
        default_prompt: instruction used where the record has none (None = family default).
        context_template: `data.context_template` for instruction-following families, None otherwise.

    Returns:
        The prompt (None = the family's default instruction).
    """
    prompt = record.prompt or default_prompt
    context = read_context(record) if context_template is not None else None
    if context is None:
        return prompt
    return apply_context(prompt or DEFAULT_INSTRUCTION, context, context_template)


def expand_examples(
    manifest: Path,
    records: list[ManifestRecord],
    default_prompt: str | None,
    per_image: bool = False,
    context_template: str | None = None,
) -> list[Example]:
    """One example per (record, caption); records without captions are skipped.

    Args:
        manifest: the manifest file (relative image paths resolve against its folder).
        records: manifest records of one split.
        default_prompt: instruction used where a record has no `prompt` (None = family default).
        per_image: one example per record instead, with all its captions as `references`.
        context_template: puts a record's `context` into its prompt (instruction-following
            families only; None = contexts are not used).

    Returns:
        Examples in manifest order.
    """
    examples: list[Example] = []
    for record in records:
        image = resolve_image(manifest, record)
        prompt = resolve_record_prompt(record, default_prompt, context_template)
        captions = tuple(caption for caption in record.captions if caption.strip())
        if per_image and captions:
            examples.append(Example(image, prompt, captions[0], captions))
        elif not per_image:
            examples.extend(Example(image, prompt, caption) for caption in captions)
    return examples


def read_split_examples(
    manifest: Path, split: str, default_prompt: str | None, max_records: int | None = None,
    per_image: bool = False, context_template: str | None = None,
) -> list[Example]:
    """Read one split of a manifest as training examples.

    Args:
        manifest: the JSONL manifest.
        split: split name to keep.
        default_prompt: instruction used where a record has no `prompt`.
        max_records: keep only the first N records of the split.
        per_image: one example per image with all its captions (SCST) instead of one per caption.
        context_template: see `expand_examples`.

    Returns:
        The split's examples (possibly empty).
    """
    records = read_manifest(manifest, split)
    kept = records[:max_records] if max_records else records
    return expand_examples(manifest, kept, default_prompt, per_image, context_template)


def load_rgb(path: Path) -> Image.Image:
    """Open an image through the loader every stage shares (EXIF orientation, alpha over white, RGB).

    No decode limit here: `validate_train_config` screened every image against
    `data.max_decoded_pixels` before the run started.
    """
    return load_image_rgb(path, max_decoded_pixels=None)


class ExampleDataset(Dataset):
    """Map-style dataset over examples; items are the examples themselves (images load in collate)."""

    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), so any epoch's order can be rebuilt on resume.

    With `lengths`, examples of similar length share a batch (`length_grouped_order`).
    """

    def __init__(
        self,
        num_examples: int,
        seed: int,
        shuffle: bool = True,
        lengths: Sequence[int] | None = None,
        batch_size: int = 1,
    ):
        self.num_examples = num_examples
        self.seed = seed
        self.shuffle = shuffle
        self.lengths = lengths
        self.batch_size = batch_size
        self.epoch = 0

    def select_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation `__iter__` yields next.

        Deliberately not named `set_epoch`: accelerate calls that with its own iteration counter,
        which restarts at 0 on the loader `skip_first_batches` builds for a resumed run.
        """
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_examples))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_examples, generator=generator).tolist()
        if self.lengths is not None:
            order = length_grouped_order(order, self.lengths, self.batch_size, generator)
        return iter(order)

    def __len__(self) -> int:
        return self.num_examples


# Examples are sorted by length within windows of this many batches (Hugging Face's
# LengthGroupedSampler uses 50 too): wide enough that batches are nearly padding-free, while which
# examples meet in a batch still changes from epoch to epoch.
LENGTH_GROUP_BATCHES = 50


def length_grouped_order(
    order: list[int], lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[int]:
    """Reorder a shuffled order so that each batch holds examples of similar length.

    Within each window of `LENGTH_GROUP_BATCHES` batches, examples are sorted longest first and cut
    into batches; the full batches are then shuffled, except that the batch with the longest example
    goes first (running out of memory shows at step 1, not hours in). A short last batch stays last,
    so the loader's own batching cuts exactly these batches.

    Args:
        order: a permutation of example indices (the epoch's shuffle).
        lengths: token count of each example's caption.
        batch_size: examples per micro-batch, as the loader batches them.
        generator: the epoch's generator, so the order depends only on (seed, epoch).

    Returns:
        The same indices in the new order.
    """
    window = batch_size * LENGTH_GROUP_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda index: -lengths[index])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    if not batches:
        return [index for batch in short for index in batch]
    longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
    first = batches.pop(longest)
    shuffled = [batches[b] for b in torch.randperm(len(batches), generator=generator).tolist()]
    return [index for batch in [first, *shuffled, *short] for index in batch]


def caption_lengths(tokenizer: Any, examples: list[Example], max_caption_tokens: int) -> list[int]:
    """Each example's caption length in tokens, capped as training cuts it (for length grouping)."""
    ids = tokenizer([e.caption for e in examples], add_special_tokens=False)["input_ids"]
    return [min(len(row), max_caption_tokens) for row in ids]


def truncate_caption(tokenizer: Any, caption: str, max_tokens: int) -> str:
    """Cut a caption to `max_tokens` tokens (unchanged when already short enough)."""
    ids = tokenizer(caption, add_special_tokens=False)["input_ids"]
    return caption if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]).strip()


def make_collate(
    family: Any, processor: Any, max_caption_tokens: int, with_pixels: bool = True
) -> Callable[[list[Example]], dict]:
    """A collate function that builds model inputs with labels (and loads images when needed).

    Args:
        family: the model family (its `build_inputs` masks prompt, image and padding labels).
        processor: the model's processor.
        max_caption_tokens: longer captions are cut to this many tokens.
        with_pixels: False when features come from the feature cache: images are then never
            decoded, only their paths go to `build_inputs(..., with_pixels=False)`, which reads
            the sizes it needs from the files' headers; decoding and resizing every image at every
            step is what starved the GPU (issue #13, and session 19's chat VLMs).

    Returns:
        collate(examples) -> {"inputs": dict of tensors, "examples": the examples,
        "caption_tokens": labelled tokens, "padded_tokens": every label position: padding, and
        for decoder-only LMs also the masked image and prompt positions}.
    """
    tokenizer = processor.tokenizer

    def collate(examples: list[Example]) -> dict[str, Any]:
        images = [load_rgb(e.image) for e in examples] if with_pixels else [e.image for e in examples]
        captions = [truncate_caption(tokenizer, e.caption, max_caption_tokens) for e in examples]
        prompts = [e.prompt for e in examples]
        inputs = family.build_inputs(processor, images, prompts, captions, with_pixels=with_pixels)
        labels = inputs["labels"]
        # Counted here on the CPU: the training loop logs tokens/s without a GPU sync.
        return {
            "inputs": dict(inputs),
            "examples": examples,
            "caption_tokens": int((labels != -100).sum()),
            "padded_tokens": labels.numel(),
        }

    return collate


def build_loader(
    examples: list[Example],
    collate: Callable,
    batch_size: int,
    seed: int,
    num_workers: int,
    shuffle: bool,
    pin_memory: bool = False,
    lengths: Sequence[int] | None = None,
) -> tuple[DataLoader, EpochShuffleSampler]:
    """A DataLoader over examples with a resumable sampler.

    Args:
        examples: the split's examples.
        collate: from `make_collate`.
        batch_size: examples per micro-batch.
        seed: data-order seed.
        num_workers: DataLoader worker processes.
        shuffle: shuffle per epoch (training) or keep file order (validation).
        pin_memory: page-lock batches (training on CUDA), so their copy to the GPU need not wait
            for the step before (accelerate's non_blocking).
        lengths: caption lengths, to batch examples of similar length together (`group_by_length`).

    Returns:
        (loader, sampler); call `sampler.select_epoch` before each epoch.
    """
    sampler = EpochShuffleSampler(len(examples), seed, shuffle, lengths, batch_size)
    loader = DataLoader(
        ExampleDataset(examples),
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        # A private generator keeps DataLoader from drawing on the global torch RNG, whose state
        # is part of the checkpoint and must advance identically in resumed and uninterrupted runs.
        generator=torch.Generator().manual_seed(seed),
        # Workers live across epochs: restarting them cost a stall of about a step per epoch on the
        # GPU (docs/benchmarks.md, session 6). The sampler runs in the main process, so data order
        # and resume are unaffected.
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
    return loader, sampler
