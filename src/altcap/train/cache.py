"""On-disk cache of the frozen part's outputs (`family.encode_images`), computed once per image.

The vision tower (and BLIP-2's Q-Former) is frozen and run in eval mode, so its output for an
image never changes during training: recomputing it every epoch is pure waste. Entries are keyed
by sha256(model fingerprint + image file hash + prompt + preprocessing), so a changed model,
image, instruction (InstructBLIP's Q-Former reads it) or processor setting never hits a stale
entry, and several runs can share one cache folder.

The weights' part of the fingerprint is hashed in fixed chunks on a thread pool
(`hash_frozen_weights`). It used to be one sequential sha256 over every byte, 1.25 GiB through one
core for Qwen2.5-VL-3B's vision tower on every run; the chunked digest is a different value, so
entries cached before the change are not found and are computed once more (then reused as before).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from altcap.cli_output import progress_bar, show_note
from altcap.data.prepared_batches import iter_prepared
from altcap.models.features import stack_feature_rows
from altcap.provenance import sha256_file
from altcap.train.data import Example, load_rgb
from altcap.train.phases import PhaseTimer

DEFAULT_CACHE_DIR = Path("~/.cache/altcap/features")


# Bytes per hashing job: large enough that hashlib releases the GIL and hand-offs cost nothing,
# small enough that a 1.3 GB vision tower (Qwen2.5-VL's) spreads over every thread.
HASH_CHUNK_BYTES = 16 * 2**20
HASH_THREADS = min(8, os.cpu_count() or 1)
# Batches of features encoded but not yet written: bounds the memory a slow disk can pile up.
MAX_PENDING_WRITES = 2
# Tensors copied off the GPU but not hashed yet are capped at about this many bytes.
HASH_IN_FLIGHT_BYTES = 512 * 2**20


def hash_frozen_weights(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over named tensors (names, shapes, dtypes and bytes), hashed on several threads.

    Hashing the weights (once per run) rather than trusting the model id means two local folders
    with the same config but different weights never share entries. Each tensor's bytes are hashed
    in fixed `HASH_CHUNK_BYTES` chunks on a thread pool (hashlib releases the GIL on large
    buffers), while the main thread copies the next tensor off the device; the result is one
    sha256 over each tensor's header and its chunk digests in name order, so it depends on the
    weights only, never on the thread count (see the module docstring for the one-time change).
    """
    digest = hashlib.sha256()
    pending: deque[tuple[bytes, list[Future], int]] = deque()
    in_flight = 0
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for name in sorted(tensors):
            tensor = tensors[name].detach().to("cpu").contiguous()
            data = tensor.reshape(-1).view(torch.uint8).numpy()
            header = f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:{data.size}".encode()
            chunks = range(0, data.size, HASH_CHUNK_BYTES)
            futures = [pool.submit(sha256_digest, data[start : start + HASH_CHUNK_BYTES]) for start in chunks]
            pending.append((header, futures, data.size))
            in_flight += data.size
            while in_flight > HASH_IN_FLIGHT_BYTES and len(pending) > 1:
                in_flight -= fold_tensor_digest(digest, pending.popleft())
        while pending:
            fold_tensor_digest(digest, pending.popleft())
    return digest.hexdigest()


def sha256_digest(data: Any) -> bytes:
    """sha256 of a buffer (bytes, numpy array)."""
    return hashlib.sha256(data).digest()


def fold_tensor_digest(digest: Any, job: tuple[bytes, list[Future], int]) -> int:
    """Add a tensor's header and chunk digests to `digest`; returns the tensor's byte count."""
    header, futures, size = job
    digest.update(header)
    for future in futures:
        digest.update(future.result())
    return size


def describe_preprocessing(processor: Any) -> dict[str, Any]:
    """The image processor's settings (resize, crop, normalisation), JSON-ready."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return {}
    return json.loads(image_processor.to_json_string())


def build_model_fingerprint(
    model_id: str, model_config: Any, frozen: dict[str, torch.Tensor], processor: Any, precision: str
) -> str:
    """One hash for everything model-side that changes the cached features.

    Args:
        model_id: hub id or folder the model was loaded from.
        model_config: the transformers config (architecture).
        frozen: the frozen part's weights by name (hashed).
        processor: its processor (preprocessing settings enter the hash).
        precision: autocast precision the frozen part runs under.

    Returns:
        Hex sha256.
    """
    parts = {
        "model_id": model_id,
        "config": model_config.to_diff_dict() if hasattr(model_config, "to_diff_dict") else str(model_config),
        "frozen_weights": hash_frozen_weights(frozen),
        "preprocessing": describe_preprocessing(processor),
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class FeatureCache:
    """Per-(image, prompt) safetensors files under `<dir>/<key[:2]>/<key>.safetensors`."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = folder.expanduser()
        self.fingerprint = fingerprint
        self._image_hashes: dict[Path, str] = {}

    def key_for(self, example: Example) -> str:
        """The cache key of an example's (image, prompt)."""
        if example.image not in self._image_hashes:
            self._image_hashes[example.image] = sha256_file(example.image)
        raw = f"{self.fingerprint}\n{self._image_hashes[example.image]}\n{example.prompt}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def path_for(self, key: str) -> Path:
        """Where a key's features live."""
        return self.folder / key[:2] / f"{key}.safetensors"

    def write(self, key: str, features: dict[str, torch.Tensor]) -> None:
        """Store one example's features atomically (temp file + rename)."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({k: v.detach().to("cpu").contiguous() for k, v in features.items()}, str(tmp))
        os.replace(tmp, path)

    def load_batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Stack the cached features of a batch, in batch order (CPU tensors)."""
        loaded = [load_file(str(self.path_for(self.key_for(e)))) for e in examples]
        # LLaVA-NeXT rows differ in tile count; stack_feature_rows zero-pads them.
        return stack_feature_rows(loaded)

    def find_missing(self, examples: list[Example]) -> list[tuple[str, Example]]:
        """(key, example) of each (image, prompt) not cached yet, first occurrence only, in order."""
        todo: dict[str, Example] = {}
        for example in examples:
            key = self.key_for(example)
            if key not in todo and not self.path_for(key).is_file():
                todo[key] = example
        return list(todo.items())

    def write_rows(self, keys: list[str], features: dict[str, torch.Tensor]) -> None:
        """Store row i of every batched feature tensor under `keys[i]`."""
        for row, key in enumerate(keys):
            self.write(key, {name: tensor[row] for name, tensor in features.items()})

    def fill(
        self,
        examples: list[Example],
        encoder: FeatureEncoder,
        batch_size: int,
        show_progress: bool,
        num_workers: int = 0,
        pin_memory: bool = False,
        timer: PhaseTimer | None = None,
    ) -> int:
        """Compute and store features for every (image, prompt) not cached yet (a partly filled
        cache, e.g. of a killed run, is completed).

        Images are decoded and preprocessed `num_workers` batches ahead in loader processes while
        the device encodes, and each batch's rows are written on a writer thread while the next is
        encoded; batches are the same `batch_size` slices of the missing entries either way.

        Args:
            examples: examples whose features training will need.
            encoder: the CPU preparation and the device encoding of a batch.
            batch_size: images per encode call.
            show_progress: draw a progress bar (main process only).
            num_workers: loader processes preparing batches (0: in this process, one at a time).
            pin_memory: page-lock prepared inputs (when encoding on CUDA).
            timer: times `cache_encode.keys` and `cache_encode.first_batch` within the fill.

        Returns:
            How many entries were computed (0 when everything was cached).
        """
        timed = timer.phase if timer is not None else lambda name: nullcontext()
        with timed("cache_encode.keys"):
            items = self.find_missing(examples)
        if items and show_progress:
            show_note(f"feature cache: encoding {len(items)} image(s) once (later runs reuse them)")
        batches = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
        # Preparing is the CPU share of a fill (decoding, resizing and patching a 448 px image takes a
        # core 10-20 ms): in one process it left the GPU idle most of the fill.
        prepared = iter_prepared(
            [[example for _, example in batch] for batch in batches],
            partial(prepare_cache_batch, encoder.prepare),
            num_workers,
            pin_memory,
            # A private generator: DataLoader would otherwise draw its worker seed from the global torch
            # RNG, which training's dropout draws from and checkpoints, so a fill would shift it.
            generator=torch.Generator(),
        )
        with timed("cache_encode.first_batch"):
            first = next(prepared, None)
        prepared = chain([first], prepared) if first is not None else prepared
        # A phase before training's own bar: its bar shows under -v only (one bar per stage).
        with progress_bar(len(items), "feature cache", "img", shown=show_progress, detail=True) as bar:
            self.encode_and_write(zip(batches, prepared, strict=True), encoder.encode, bar.update)
        return len(items)

    def encode_and_write(self, prepared: Iterator, encode: Callable, advance: Callable[[int], Any]) -> None:
        """Encode each (batch of (key, example), inputs) and write its rows on a writer thread."""
        with ThreadPoolExecutor(max_workers=1) as writer:
            writes: deque[Future] = deque()
            for batch, inputs in prepared:
                # One copy off the device per tensor; its rows go to disk while the next batch encodes.
                features = {name: tensor.detach().to("cpu") for name, tensor in encode(inputs).items()}
                writes.append(writer.submit(self.write_rows, [key for key, _ in batch], features))
                while len(writes) > MAX_PENDING_WRITES:
                    writes.popleft().result()  # bounds the features held in memory; raises a write error
                advance(len(batch))
            for write in writes:
                write.result()


@dataclass(frozen=True)
class FeatureEncoder:
    """How a batch's cached features are made, split where the work moves from CPU to device.

    `prepare(images, prompts)` builds the frozen part's inputs on the CPU (in loader workers, so
    picklable where processes are spawned); `encode(inputs)` runs the frozen part and returns its
    batched feature tensors (batch on dim 0).
    """

    prepare: Callable[[list[Any], list[str | None]], dict[str, Any]]
    encode: Callable[[dict[str, Any]], dict[str, torch.Tensor]]


def prepare_cache_batch(prepare: Callable, batch: list[Example]) -> dict[str, Any]:
    """A batch's frozen-part inputs, its images decoded here (in a loader worker during a fill).

    Args:
        prepare: `FeatureEncoder.prepare`.
        batch: the examples of one encode call.

    Returns:
        The inputs `FeatureEncoder.encode` takes.
    """
    return prepare([load_rgb(e.image) for e in batch], [e.prompt for e in batch])


@dataclass
class CollateWithFeatures:
    """A training collate that also loads each example's cached features into `batch["features"]`.

    In the DataLoader's workers the file reads overlap with training, and the features travel with
    the (pinned) batch instead of a separate synchronous copy from the main process: compiled
    BLIP-2 Flan-T5-XL at batch 128 went from 258 to 354-502 samples/s on H100s
    (docs/benchmarks.md, session 6).
    """

    collate: Callable[[list[Example]], dict[str, Any]]
    cache: FeatureCache

    def __call__(self, examples: list[Example]) -> dict[str, Any]:
        batch = self.collate(examples)
        batch["features"] = self.cache.load_batch(examples)
        return batch
