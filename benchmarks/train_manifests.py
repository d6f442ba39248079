"""Inputs of the training benchmarks: the model to time and a small manifest of synthetic images
(CPU) or Flickr8k."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.random_archs import build_random_arch

TINY_CAPTIONS = (
    "a dog runs across the green grass in a park",
    "two children are playing on the beach near the water",
    "a woman sits on a bench and reads a book",
    "a cat sleeps on a brown couch next to a window",
)


def write_tiny_manifest(root: Path, num_images: int) -> Path:
    """Synthetic images + manifest (all train) for the CPU smoke mode."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(num_images):
        Image.new("RGB", (48, 40), (index * 29 % 256, index * 71 % 256, 90)).save(
            root / "images" / f"{index}.png"
        )
        rows.append(
            {"image": f"images/{index}.png", "captions": [TINY_CAPTIONS[index % 4]], "split": "train"}
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root / "manifest.jsonl"


def write_flickr_manifest(images_dir: Path, root: Path, num_images: int, captions_per_image: int = 1) -> Path:
    """A manifest over the first Flickr8k training images (their first `captions_per_image` captions)."""
    images_dir = images_dir.resolve()  # the manifest lives elsewhere; relative paths would break
    captions: dict[str, list[str]] = {}
    for line in (images_dir / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t", 1)
        captions.setdefault(key.split("#")[0], []).append(caption)
    names = (images_dir / "Flickr_8k.trainImages.txt").read_text().split()[:num_images]
    rows = [
        {"image": str(images_dir / "Images" / n), "captions": captions[n][:captions_per_image],
         "split": "train"}
        for n in names
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root / "manifest.jsonl"


def read_flickr_captions(images_dir: Path) -> list[str]:
    """Every caption of a Flickr8k-layout folder (the benchmark tokenizer learns its vocabulary here)."""
    lines = (images_dir / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines if "\t" in line]


def prepare_model_id(args: argparse.Namespace, scratch: Path) -> str:
    """The model to time: a tiny random BLIP-2 OPT (`--tiny`), a real architecture with random
    weights built into `scratch` (`--random-arch`), or `--model-id` as given.

    Args:
        args: options with `tiny`, `random_arch`, `model_id` and `images` (a Flickr8k-layout folder
            gives the random architecture's tokenizer real-length captions to learn from).
        scratch: folder for a built model.

    Returns:
        A model folder or hub id.
    """
    if args.tiny:
        from altcap.models.tiny import build_tiny_model

        return str(build_tiny_model("blip2", scratch / "model", variant="opt"))
    if not args.random_arch:
        return args.model_id
    flickr = args.images is not None and (args.images / "Flickr8k.token.txt").is_file()
    corpus = read_flickr_captions(args.images) if flickr else None  # real-length token sequences
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return str(build_random_arch(args.random_arch, scratch / "model", device, corpus))
