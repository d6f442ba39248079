"""Photo quality flags (issue 29 item 5) on synthetic photos with known defects."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from altcap.data.check import run_data_check
from altcap.data.configs import DataCheckConfig
from altcap.data.manifest import read_manifest
from altcap.data.quality import QUALITY_CODES, flag_quality, measure_quality

from .conftest import write_manifest_lines


def _sharp(seed: int = 0) -> Image.Image:
    """Random 4-px blocks with hard edges over the full 0-255 range: a sharp, well-exposed stand-in."""
    grey = np.random.default_rng(seed).integers(0, 256, (75, 100), dtype=np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1)).resize((400, 300), Image.Resampling.NEAREST)


def _scaled(image: Image.Image, low: int, high: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return Image.fromarray((low + pixels * (high - low)).astype(np.uint8))


SYNTHETIC = {
    "sharp": (lambda: _sharp(), []),
    "blurred": (lambda: _sharp().filter(ImageFilter.GaussianBlur(6)), ["blurry"]),
    "dark": (lambda: _scaled(_sharp(), 0, 24), ["underexposed"]),
    "bright": (lambda: _scaled(_sharp(), 232, 255), ["overexposed"]),
    "foggy": (lambda: _scaled(_sharp(), 100, 160), ["low_contrast"]),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_each_defect_raises_its_flag(name: str) -> None:
    make, expected = SYNTHETIC[name]
    flags = flag_quality(measure_quality(make()))
    assert set(expected) <= set(flags), (name, flags)
    if not expected:
        assert flags == []
    if name == "foggy":  # low contrast alone: the texture is still sharp
        assert "blurry" not in flags


def test_blur_is_measured_at_a_fixed_size() -> None:
    small = _sharp().filter(ImageFilter.GaussianBlur(2))
    large = small.resize((1600, 1200), Image.Resampling.BICUBIC)
    ratio = measure_quality(large)["laplacian_variance"] / measure_quality(small)["laplacian_variance"]
    assert 0.5 < ratio < 2  # the same photo at 4x the resolution scores about the same


def test_check_reports_flags_and_writes_them_to_the_clean_manifest(tmp_path: Path) -> None:
    rows = []
    for name, (make, _) in sorted(SYNTHETIC.items()):
        make().save(tmp_path / f"{name}.png")
        rows.append({"image": f"{name}.png", "captions": [name], "split": "train"})
    manifest = write_manifest_lines(tmp_path / "m.jsonl", rows)
    report = run_data_check(DataCheckConfig(manifest=manifest, out_dir=tmp_path / "out", workers=1))
    quality_codes = set(QUALITY_CODES.values())
    codes = {(f["line"], f["code"]) for f in report["findings"] if f["code"] in quality_codes}
    names = [row["captions"][0] for row in rows]
    assert (names.index("blurred") + 1, "IMAGE_BLURRY") in codes
    assert (names.index("dark") + 1, "IMAGE_UNDEREXPOSED") in codes
    assert (names.index("bright") + 1, "IMAGE_OVEREXPOSED") in codes
    assert (names.index("foggy") + 1, "IMAGE_LOW_CONTRAST") in codes
    assert not [c for line, c in codes if line == names.index("sharp") + 1]
    assert report["summary"]["errors"] == 0  # flags are notes: nothing is dropped
    clean_manifest = read_manifest(tmp_path / "out" / "manifest.clean.jsonl")
    clean = {r.captions[0]: r.metadata["quality_flags"] for r in clean_manifest}
    assert clean["sharp"] == [] and "blurry" in clean["blurred"] and clean["foggy"] == ["low_contrast"]
