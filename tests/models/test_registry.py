"""The registry's typed capabilities: each family declares what it can do, and lookups by capability agree."""

from __future__ import annotations

import pytest

from altcap.models.registry import ModelFamily, families_with, get_family, list_families, register_family


def test_capabilities_are_declared_per_family() -> None:
    graphed = set(families_with("graphed_decoding"))
    assert {"blip2", "instructblip", "qwen2_5_vl", "smolvlm", "gemma3"} <= graphed
    assert not graphed & {"blip", "llava_next", "altcap_mini", "paligemma", "florence2"}
    assert families_with("native") == ["altcap_mini"]
    older = {"blip", "blip2", "instructblip", "llava_next", "altcap_mini"}
    assert set(families_with("feature_cache")) >= older
    assert "vision_blocks" in get_family("altcap_mini").capabilities()
    assert "quantized" not in get_family("altcap_mini").capabilities()  # no 4-bit loader for a non-HF model
    assert get_family("blip2").feature_cache.cached_part == ("vision_model", "query_tokens", "qformer")
    assert get_family("instructblip").feature_cache.cached_part == ("vision_model",)


def test_a_family_with_only_core_fields_registers_and_has_no_capabilities() -> None:
    # The shape a generic family uses: core fields only, every capability absent.
    blip = get_family("blip")
    family = ModelFamily(
        name="core_only_probe", hf_class="AutoModelForImageTextToText", model_types=("probe",),
        default_lora_targets=("q_proj",), load=blip.load, build_inputs=blip.build_inputs,
        generate=blip.generate, lora_scope="language_model",
    )
    assert family.capabilities() == []
    list_families()  # imports every family first, so the duplicate check below sees them all
    with pytest.raises(ValueError, match="already registered"):
        register_family(get_family("blip"))
