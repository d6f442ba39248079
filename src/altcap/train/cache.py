"""On-disk cache of the frozen part's outputs (`family.encode_images`), computed once per image.

The vision tower (and BLIP-2's Q-Former) is frozen and run in eval mode, so its output for an
image never changes during training: recomputing it every epoch is pure waste. Entries are keyed
by sha256(model fingerprint + image file hash + prompt + preprocessing), so a changed model,
image, instruction (InstructBLIP's Q-Former reads it) or processor setting never hits a stale
entry, and several runs can share one cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from altcap.cli_output import progress_bar, show_note
from altcap.models.features import stack_feature_rows
from altcap.provenance import sha256_file
from altcap.train.data import Example, load_rgb

DEFAULT_CACHE_DIR = Path("~/.cache/altcap/features")


def hash_frozen_weights(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over named tensors (names, shapes, dtypes and bytes).

    Hashing the weights (seconds, once per run) rather than trusting the model id means two local
    folders with the same config but different weights never share entries.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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

    def fill(
        self, examples: list[Example], encode_batch: Callable, batch_size: int, show_progress: bool
    ) -> int:
        """Compute and store features for every (image, prompt) not cached yet.

        Args:
            examples: examples whose features training will need.
            encode_batch: (images, prompts) -> dict of batched feature tensors (batch on dim 0).
            batch_size: images per encode call.
            show_progress: draw a progress bar (main process only).

        Returns:
            How many entries were computed (0 when everything was cached).
        """
        todo: dict[str, Example] = {}
        for example in examples:
            key = self.key_for(example)
            if key not in todo and not self.path_for(key).is_file():
                todo[key] = example
        items = list(todo.items())
        if items and show_progress:
            show_note(f"feature cache: encoding {len(items)} image(s) once (later runs reuse them)")
        # A phase before training's own bar: its bar shows under -v only (one bar per stage).
        with progress_bar(len(items), "feature cache", "img", shown=show_progress, detail=True) as bar:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                features = encode_batch([load_rgb(e.image) for _, e in chunk], [e.prompt for _, e in chunk])
                for row, (key, _) in enumerate(chunk):
                    self.write(key, {name: tensor[row] for name, tensor in features.items()})
                bar.update(len(chunk))
        return len(items)


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
