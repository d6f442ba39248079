"""chat_vlm_caption: HF batched generate and altcap's caption path on the same tiny weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import chat_vlm_caption


def test_compare_ids_counts_identical_rows_and_the_first_differing_step() -> None:
    paths = [Path("a.jpg"), Path("b.jpg"), Path("c.jpg")]
    result = chat_vlm_caption.compare_ids(
        [[1, 2, 3], [4, 5, 6], [7, 8]], [[1, 2, 3], [4, 9, 6], [7, 8, 9]], paths
    )
    assert result["identical_rows"] == 1 and result["identical_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["differing_rows"] == [
        {"image": "b.jpg", "first_differing_step": 1},
        {"image": "c.jpg", "first_differing_step": 2},
    ]


@pytest.mark.slow
def test_tiny_run_times_both_sides_and_matches_greedy_ids(tmp_path: Path) -> None:
    argv = ["--tiny", "--rows", "6", "--hf-batch-sizes", "3,6", "--altcap-batch-size", "3"]
    out = chat_vlm_caption.main([*argv, "--num-workers", "0", "--out", str(tmp_path / "c.json")])
    report = json.loads(out.read_text())
    assert set(report["hf"]) == {"3", "6"} and report["hf_best_batch_size"] in (3, 6)
    assert report["altcap"]["captions_written"] == 6
    assert report["ratio_altcap_over_hf_best"] > 0
    # Same image size on both sides: 256 image tokens at 448 px plus the same template.
    assert report["altcap"]["prompt_tokens"] == report["hf"]["3"]["prompt_tokens"] > 256
    # fp32 on the CPU, the same weights and prompt: plain greedy decoding agrees on every row.
    assert report["greedy_ids"]["identical_rows"] == 6, report["greedy_ids"]
