"""The converted-model cache: a cache hit gives the cold load's model exactly; a broken copy is rebuilt."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from altcap.models import efficientnet_lite as effnet
from altcap.models.converted_cache import MANIFEST_FILE, fingerprint_sources, load_through_cache
from altcap.models.families import altcap_mini as mini

IMAGES = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (32, 32), (20, 180, 40))]
GREEDY = {"num_beams": 1, "max_new_tokens": 6, "do_sample": False}


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ALTCAP_MODEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny(tiny_altcap_mini_dir: Path) -> Path:
    return tiny_altcap_mini_dir


def load_tiny(tiny: Path, conversions: list[int]) -> tuple[mini.AltcapMini, mini.AltcapMiniProcessor]:
    """The tiny model through the cache, converted (counted in `conversions`) as the packaged one is."""
    key = fingerprint_sources([p for p in tiny.rglob("*") if p.is_file()], [])

    def convert() -> tuple[mini.AltcapMini, mini.AltcapMiniProcessor]:
        conversions.append(1)
        return mini.assemble(tiny)

    return load_through_cache("tiny-mini", key, convert, mini.save_converted, mini.assemble)


def logits_and_captions(model: mini.AltcapMini, processor: mini.AltcapMiniProcessor) -> tuple:
    inputs = mini.build_inputs(processor, IMAGES, [None, None], ["a red square", "a green one"])
    with torch.no_grad():
        logits = model(**inputs).logits
    captions = mini.generate(model, processor, mini.build_inputs(processor, IMAGES, [None, None]), GREEDY)
    return logits, captions


def test_a_cache_hit_gives_the_cold_loads_logits_and_captions(tiny: Path, cache_root: Path) -> None:
    conversions: list[int] = []
    cold = logits_and_captions(*load_tiny(tiny, conversions))
    warm = logits_and_captions(*load_tiny(tiny, conversions))
    assert conversions == [1]  # the second load read the copy
    assert [(p / MANIFEST_FILE).is_file() for p in cache_root.iterdir()] == [True]
    assert torch.equal(cold[0], warm[0]) and cold[1] == warm[1]
    assert not [p for p in cache_root.iterdir() if ".tmp-" in p.name]  # written atomically


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_broken_copy_is_rebuilt(tiny: Path, cache_root: Path, damage: str, caplog) -> None:
    conversions: list[int] = []
    cold = logits_and_captions(*load_tiny(tiny, conversions))
    (folder,) = list(cache_root.iterdir())
    weights = folder / "language_model" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2] if damage == "truncate" else b"\x00" * size)
    with caplog.at_level(logging.WARNING, logger="altcap.models.converted_cache"):
        again = logits_and_captions(*load_tiny(tiny, conversions))
    assert conversions == [1, 1] and "converting again" in caplog.text
    assert torch.equal(cold[0], again[0]) and cold[1] == again[1]
    assert weights.stat().st_size == size
    logits_and_captions(*load_tiny(tiny, conversions))
    assert conversions == [1, 1]  # the rebuilt copy is used from then on


def test_a_changed_source_file_gets_a_new_key(tiny: Path, tmp_path: Path) -> None:
    copy = tmp_path / "config.json"
    copy.write_bytes((tiny / "config.json").read_bytes())
    before = fingerprint_sources([copy], [])
    copy.write_bytes(copy.read_bytes() + b" ")
    assert fingerprint_sources([copy], []) != before


@pytest.mark.slow
@pytest.mark.skipif(
    None in (effnet.find_lite0_weights(), effnet.find_package_file(mini.GGUF_PACKAGE, mini.GGUF_FILE)),
    reason="the packaged altcap-mini parts are not installed",
)
def test_packaged_altcap_mini_warm_start_equals_cold(cache_root: Path) -> None:
    cold = logits_and_captions(*mini.load("altcap-mini"))
    assert any(cache_root.iterdir())
    warm = logits_and_captions(*mini.load("altcap-mini"))
    assert torch.equal(cold[0], warm[0]) and cold[1] == warm[1]
