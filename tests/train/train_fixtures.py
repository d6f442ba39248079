"""Test helpers for tests/train (a uniquely named module, so `import` never picks another conftest)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from altcap.config import load_config
from altcap.models.tiny import TINY_CAPTIONS
from altcap.train.config import TrainConfig

# Captions from the tiny tokenizers' training corpus, so every one round-trips exactly.
CAPTIONS = TINY_CAPTIONS[:8]


def write_manifest(root: Path, n_train: int = 6, n_val: int = 2, captions_per_image: int = 1) -> Path:
    """Distinct small images plus a manifest with train and val records (relative image paths)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n_train + n_val):
        image = Image.new("RGB", (40, 30), ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256))
        ImageDraw.Draw(image).rectangle(
            [index * 3, index * 2, index * 3 + 10, index * 2 + 8], fill=(250, 20, 90)
        )
        image.save(root / "images" / f"{index}.png")
        captions = [CAPTIONS[(index + k) % len(CAPTIONS)] for k in range(captions_per_image)]
        split = "train" if index < n_train else "val"
        rows.append({"image": f"images/{index}.png", "captions": captions, "split": split})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


def make_config(model_dir: Path, manifest: Path, output_dir: Path, *sets: str) -> TrainConfig:
    """A small, fast TrainConfig (fp32 CPU, r=8, tiny batches); `sets` override like --set."""
    base = [
        f"model.model_id={model_dir}",
        f"data.manifest={manifest}",
        f"output_dir={output_dir}",
        f"feature_cache.dir={output_dir.parent / 'feature_cache'}",
        "batch_size=2",
        "grad_accum_steps=2",
        "epochs=2",
        "lora.r=8",
        "lora.alpha=16",
        "optim.lr=1e-3",
        "log_every_n_steps=1",
        "save_every_n_steps=2",
        "report_to=none",
    ]
    return load_config(TrainConfig, None, {}, [*base, *sets])


WALL_CLOCK_FIELDS = {"samples_per_s", "caption_tokens_per_s", "data_wait_s", "elapsed_s", "gc_s"}


def read_log(output_dir: Path) -> list[dict]:
    """train_log.jsonl rows without the wall-clock fields."""
    lines = (output_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK_FIELDS} for row in rows]
