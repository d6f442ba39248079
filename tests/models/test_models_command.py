"""`altcap models` through the CLI: the table and the JSON list of families."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from altcap.cli import app
from altcap.models.registry import list_families

REQUIRED_TYPES = {
    *("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3", "smolvlm", "idefics3", "paligemma", "internvl"),
    *("llava_onevision", "florence2", "blip-2"),
}


def test_models_json_lists_every_family_with_its_model_types() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == list_families()
    types = {t for row in rows for t in row["model_types"]}
    assert types >= REQUIRED_TYPES
    assert len(types) >= 15
    by_name = {row["name"]: row for row in rows}
    assert by_name["blip2"]["capabilities"]["feature_cache"] is True
    assert by_name["qwen2_5_vl"]["capabilities"] == {
        "feature_cache": True,
        "graphed_decoding": True,
        "graphed_training": True,
        "qlora": True,
        "chat_template": True,
        "instructions": True,
        "projector_vision_lora": True,
        "packed_vision_attention": True,
    }
    assert by_name["florence2"]["capabilities"]["feature_cache"] is False
    assert by_name["blip2"]["capabilities"]["projector_vision_lora"] is False
    assert by_name["paligemma"]["capabilities"]["chat_template"] is False
    assert by_name["paligemma"]["capabilities"]["graphed_decoding"] is False  # fails on a static cache
    assert by_name["gemma3"]["capabilities"]["graphed_training"] is False  # per-layer-type masks
    # who reads a record's context: instruction followers with or without a chat template
    assert by_name["blip2"]["capabilities"]["instructions"] is True
    assert by_name["blip"]["capabilities"]["instructions"] is False
    assert by_name["paligemma"]["capabilities"]["instructions"] is False
    assert by_name["altcap_mini"]["capabilities"]["qlora"] is False
    assert by_name["gemma3"]["capabilities"]["packed_vision_attention"] is False  # one call per batch already


def test_models_table_names_each_family_and_counts_them() -> None:
    result = CliRunner().invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in list_families():
        assert name in result.stdout
    assert f"{len(list_families())} families" in result.stdout
