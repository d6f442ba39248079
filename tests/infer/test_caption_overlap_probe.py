"""The overlap probe's timeline arithmetic, and a CPU smoke run of the probe."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "benchmarks" / "caption_overlap_probe.py"


def load_probe():
    spec = importlib.util.spec_from_file_location("caption_overlap_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_busy_times_per_stream_union_and_overlap() -> None:
    probe = load_probe()
    # Stream 7: 0-10 and 5-20 (busy 20 ns); stream 9: 15-30 (15 ns); both at once: 15-20.
    summary = probe.timeline_summary([(7, 0, 10), (7, 5, 20), (9, 15, 30)])
    assert summary["streams"]["7"] == {"busy_s": 20e-9, "kernels": 2}
    assert summary["streams"]["9"]["busy_s"] == pytest.approx(15e-9)
    assert summary["any_stream_busy_s"] == pytest.approx(30e-9)
    assert summary["several_streams_busy_s"] == pytest.approx(5e-9)


def test_tiny_cpu_run_writes_both_variants(tmp_path) -> None:
    args = ["--tiny", "--batch-size", "2", "--batches", "2", "--max-new-tokens", "3", "--num-workers", "1"]
    args += ["--device", "cpu", "--setting", "dynamic", "--out-dir", str(tmp_path)]
    report = json.loads(load_probe().main(args).read_text())
    assert [v["serial"] for v in report["variants"]] == [True, False]
    assert all(v["images"] == 4 and v["wall_s"] > 0 for v in report["variants"])
    assert report["overlapped_over_serial_wall"] > 0
