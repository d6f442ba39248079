"""The throughput sweep runs end to end on tiny CPU models and writes a complete report and plot."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["opt", "t5"])
def test_tiny_sweep_writes_report_and_plot(tmp_path, variant) -> None:
    from benchmarks import caption_throughput  # here: it imports transformers (~4 s of collection)

    args = ["--tiny", "--tiny-variant", variant, "--num-images", "5", "--per-image-images", "2"]
    args += ["--repeats", "2", "--beams", "2,1", "--direct-batch-sizes", "2,4", "--max-new-tokens", "3"]
    args += ["--altcap-runs", "dynamic:4,static:2", "--num-workers", "1", "--device", "cpu"]
    out = caption_throughput.main([*args, "--out-dir", str(tmp_path / "results")])
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert set(report["results"]) == {"2", "1"} and report["model"] == f"tiny-blip2-{variant}"
    for beams, result in report["results"].items():
        assert (
            result["per_image_loop"]["images"] == 2 and result["per_image_loop"]["single_image_latency_s"] > 0
        )
        assert [r["batch_size"] for r in result["batched_generate"]] == [2, 4]
        assert [(r["setting"], r["batch_size"]) for r in result["altcap"]] == [("dynamic", 4), ("static", 2)]
        rows = result["batched_generate"] + result["altcap"]
        assert all(r["images"] == 5 and r["captions_per_s"] > 0 for r in rows)
        # The winners were timed --repeats times, the others once.
        assert sorted(len(r["seconds_per_repeat"]) for r in rows) == [1, 1, 2, 2]
        best = result["best_altcap"]["captions_per_s"] / result["best_batched"]["captions_per_s"]
        assert result["altcap_over_batched"] == pytest.approx(best)
        generation = report["settings"]["generation"][beams]
        assert generation["min_new_tokens"] == generation["max_new_tokens"] == 3
        assert generation["num_beams"] == int(beams)
    check = report["greedy_id_check"]
    assert check["passed"] and check["rows_with_equal_ids"] == check["captions_equal_to_batched"] > 0
    assert check["setting"] == report["results"]["1"]["best_altcap"]["setting"]
    assert "torch" in report["versions"] and report["total_seconds"] > 0


def test_altcap_runs_parse_and_reject_unknown_settings() -> None:
    from benchmarks import caption_throughput

    assert caption_throughput.parse_altcap_runs("static:256,dynamic:64") == [("static", 256), ("dynamic", 64)]
    with pytest.raises(Exception, match="SETTING:BATCH"):
        caption_throughput.parse_altcap_runs("fast:256")
