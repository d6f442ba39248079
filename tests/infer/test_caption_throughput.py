"""The throughput benchmark runs end to end on a tiny CPU model and writes a complete report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "caption_throughput.py"


def test_tiny_benchmark_writes_report(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("caption_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = [
        "--tiny",
        "--repeats",
        "1",
        "--per-image-images",
        "2",
        "--num-images",
        "4",
        "--batch-size",
        "2",
        "--num-beams",
        "2",
        "--max-new-tokens",
        "3",
        "--device",
        "cpu",
        "--out-dir",
        str(tmp_path / "results"),
    ]
    out = module.main(args)
    report = json.loads(out.read_text())
    assert set(report["results"]) == {
        "per_image_loop",
        "batched_generate",
        "altcap_run_caption",
        "altcap_no_prefetch",
    }
    assert (
        report["results"]["per_image_loop"]["images"] == 2
        and report["results"]["batched_generate"]["images"] == 4
    )
    assert all(r["captions_per_s"] > 0 for r in report["results"].values())
    assert (
        report["settings"]["generation"]["min_new_tokens"]
        == report["settings"]["generation"]["max_new_tokens"]
    )
    assert report["speedup_vs_per_image"]["per_image_loop"] == 1.0
    assert report["single_image_latency_s"] > 0 and "torch" in report["versions"]
