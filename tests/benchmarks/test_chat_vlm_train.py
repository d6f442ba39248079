"""chat_vlm_train: altcap's side through `run_train`, TRL's side skipped where TRL is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import chat_vlm_train


def test_altcap_side_gets_the_shared_settings() -> None:
    args = chat_vlm_train.parse_args(["--batch-size", "16", "--epochs", "3", "--altcap-cache", "off"])
    sets = chat_vlm_train.build_altcap_sets(args, Path("/m"), Path("/d.jsonl"), Path("/w/run"))
    assert {"batch_size=16", "epochs=3", "lora.r=16", "lora.alpha=32", "gradient_checkpointing=false"} <= set(
        sets
    )
    assert "feature_cache.enabled=false" in sets and "model.max_image_pixels=200704" in sets


def test_child_options_round_trip_through_the_parser() -> None:
    args = chat_vlm_train.parse_args(["--samples", "32", "--no-liger", "--altcap-cache", "on", "--tiny"])
    child = chat_vlm_train.parse_args(chat_vlm_train.child_argv(args, "trl", Path("/m"), Path("/w")))
    for name in (
        "samples",
        "epochs",
        "batch_size",
        "image_px",
        "lora_r",
        "lora_alpha",
        "altcap_cache",
        "tiny",
    ):
        assert getattr(child, name) == getattr(args, name), name
    assert child.liger is False and child.side == "trl" and child.model_dir == Path("/m")


def test_compare_gives_ratios_only_when_both_sides_finished() -> None:
    sides = {
        "trl": {"end_to_end_s": 30.0, "peak_allocated_gb": 29.4},
        "altcap": {"end_to_end_s": 20.0, "peak_allocated_gb": 25.0},
    }
    assert chat_vlm_train.compare(sides) == {
        "speedup_wall_trl_over_altcap": 1.5,
        "peak_memory_altcap_over_trl": 0.85,
    }
    assert "note" in chat_vlm_train.compare({"trl": {"error": "x"}, "altcap": {"end_to_end_s": 1.0}})


@pytest.mark.slow
def test_tiny_run_trains_altcap_and_says_when_trl_is_skipped(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(chat_vlm_train, "trl_available", lambda: False)
    argv = ["--tiny", "--samples", "4", "--batch-size", "2", "--epochs", "1", "--num-workers", "0"]
    out = chat_vlm_train.main([*argv, "--out", str(tmp_path / "t.json")])
    report = json.loads(out.read_text())
    altcap = report["sides"]["altcap"]
    assert "error" not in altcap, altcap
    assert altcap["samples"] == 4 and altcap["end_to_end_s"] > 0
    assert altcap["phase_seconds"]["fit"] > 0 and "cache_encode" in altcap["phase_seconds"]
    assert [row["step"] for row in altcap["log_timing"]] == [2]  # 2 steps, logged at the last
    assert all(row["elapsed_s"] > 0 and row["data_wait_s"] >= 0 for row in altcap["log_timing"])
    assert report["sides"]["trl"] == {"skipped": "trl or datasets not importable"}
    assert "trl side skipped" in capsys.readouterr().out
