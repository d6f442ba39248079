"""`altcap train`, `altcap caption` and `altcap run` on a tiny saved Qwen2.5-VL folder, through
the CLI, exactly as with a hub id (CPU; minutes on a loaded 2-core box)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from altcap.cli import app
from altcap.models.tiny import TINY_CAPTIONS

pytestmark = pytest.mark.slow


@pytest.fixture
def qwen_folder(chat_dir: Callable[[str], Path]) -> Path:
    return chat_dir("qwen2_5_vl")


def write_manifest(root: Path, splits: dict[str, int]) -> Path:
    """Small distinct images with one caption each, in the given splits."""
    (root / "images").mkdir(parents=True)
    rows, index = [], 0
    for split, count in splits.items():
        for _ in range(count):
            image = Image.new("RGB", (40, 30), ((index * 37) % 256, (index * 91) % 256, 60))
            ImageDraw.Draw(image).rectangle([index * 3, 2, index * 3 + 10, 12], fill=(250, 20, 90))
            image.save(root / "images" / f"{index}.png")
            caption = TINY_CAPTIONS[index % len(TINY_CAPTIONS)]
            rows.append({"image": f"images/{index}.png", "captions": [caption], "split": split})
            index += 1
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


def test_train_then_caption_with_the_adapter(qwen_folder: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", {"train": 4, "val": 2, "test": 3})
    run = tmp_path / "run"
    train = CliRunner().invoke(
        app,
        ["train", "--model-id", str(qwen_folder), "--manifest", str(manifest), "--output-dir", str(run),
         "--epochs", "1", "--batch-size", "2", "--lora-r", "4", "--report-to", "none", "--precision", "fp32",
         "--set", "model.max_image_pixels=3136", "--set", f"feature_cache.dir={tmp_path / 'features'}"],
    )  # fmt: skip
    assert train.exit_code == 0, train.output
    adapter_config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert "language_model" in adapter_config["target_modules"]
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["feature_cache_used"] is True  # the frozen vision tower ran once per image
    assert provenance["config"]["model"]["max_image_pixels"] == 3136
    out = tmp_path / "captions.jsonl"
    caption = CliRunner().invoke(
        app,
        ["caption", "--model-id", str(qwen_folder), "--adapter", str(run / "adapter"),
         "--manifest", str(manifest), "--out", str(out), "--max-new-tokens", "5", "--num-beams", "1",
         "--batch-size", "2"],
    )  # fmt: skip
    assert caption.exit_code == 0, caption.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and all(isinstance(r["caption"], str) for r in records)
    assert {r["adapter"] for r in records} == {str(run / "adapter")}
    assert not any("<|im_end|>" in r["caption"] for r in records)


def test_run_pipeline_on_the_folder(qwen_folder: Path, tmp_path: Path) -> None:
    config = {
        "run_dir": str(tmp_path / "run"),
        "train": {
            "lora": {"r": 4, "alpha": 8},
            "batch_size": 4,
            "epochs": 1,
            "max_steps": 2,
            "report_to": "none",
            "feature_cache": {"dir": str(tmp_path / "features")},
        },
        "caption": {"limit": 4, "batch_size": 4, "generation": {"num_beams": 1, "max_new_tokens": 5}},
        "evaluate": {"fgd": False, "bootstrap_samples": 50},
        "simulation": {"n_participants": 8, "seed": 1},
        "analysis": {"n_boot": 200},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(path), "--model-id", str(qwen_folder)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert (run / "03_train/adapter/adapter_config.json").is_file()
    assert len((run / "04_captions/finetuned.jsonl").read_text().splitlines()) == 4
    assert (run / "08_memo/memo.md").is_file()
