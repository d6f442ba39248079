import json
from pathlib import Path

import pytest

from benchmarks import plot_train_throughput, train_flops, train_throughput


@pytest.mark.slow
def test_tiny_cpu_benchmark_reports_every_variant(tmp_path: Path) -> None:
    argv = ["--tiny", "--steps", "2", "--num-images", "16", "--group-by-length"]
    out = train_throughput.main([*argv, "--out", str(tmp_path / "bench.json")])
    report = json.loads(out.read_text())
    assert set(report["results"]) == {
        "A_tutorial_fp32",
        "B_peft_bf16",
        "B_dynamic",
        "altcap",
        "altcap_no_cache",
    }
    for result in report["results"].values():
        assert result["samples_per_s"] > 0 and result["tokens_per_s"] > 0 and result["peak_memory_mb"] > 0
    assert report["speedups"]["vs_A_tutorial_fp32"]["A_tutorial_fp32"] == 1.0
    check = report["fixed_batch_check"]
    # fp32 on CPU: the cached-feature loss is the plain forward's loss up to float rounding.
    assert check["relative_difference"] < 1e-5
    # Skipping the frozen vision tower and Q-Former must remove FLOPs from every training step.
    assert 0 < check["flops_per_sample_cached_step"] < check["flops_per_sample_full_step"]
    # Counted FLOPs are quadratic in the label length: three counts predict the fourth exactly.
    points = check["flops_per_sample_cached_by_label_length"]
    assert check["flops_by_length_fourth_point_predicted"] == pytest.approx(points[3][1], rel=1e-9)
    assert points[0][1] == check["flops_per_sample_cached_step"] and points[0][1] < points[1][1]
    altcap = report["results"]["altcap"]
    # Each timed step's FLOPs come from its own padded length: a step padded to L costs F(L).
    step_flops = [
        n * train_flops.flops_at_label_length(points, length)
        for n, length in zip(altcap["per_step_samples"], altcap["per_step_label_length"], strict=True)
    ]
    assert altcap["flops_per_sample"] == pytest.approx(sum(step_flops) / sum(altcap["per_step_samples"]))
    assert all(length == int(length) for length in altcap["per_step_label_length"])
    assert 0 <= altcap["padding_share"] < 1
    time_weighted = sum(altcap["per_step_samples"]) / sum(altcap["per_step_elapsed_s"])
    assert altcap["samples_per_s"] == pytest.approx(time_weighted)
    assert len(altcap["per_step_samples_per_s"]) == len(altcap["per_step_data_wait_s"]) == 2
    assert all(wait >= 0 for wait in altcap["per_step_data_wait_s"])
    assert report["versions"]["torch"]
    png = plot_train_throughput.plot(out, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps_png = plot_train_throughput.plot_steps([("tiny", out)], tmp_path / "steps.png", variant="altcap")
    assert steps_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_collate_only_mode_times_both_collates(tmp_path: Path) -> None:
    argv = ["--tiny", "--collate-only", "--steps", "2", "--batch-size", "4"]
    argv += ["--out", str(tmp_path / "c.json")]
    report = json.loads(train_throughput.main(argv).read_text())
    assert set(report["results"]) == {"collate_with_pixels", "collate_text_only"}
    assert all(r["median_ms"] >= r["min_ms"] > 0 for r in report["results"].values())
    assert report["text_only_speedup"] > 0


def test_mfu_counts_each_steps_padded_length_and_bounds_the_padding() -> None:

    def flops(length: int) -> int:  # per sample: what the FLOP counter gives, quadratic in length
        return 1000 + 50 * length + 2 * length**2

    points = [[length, flops(length)] for length in (10, 18, 26, 34)]
    result = {
        "per_step_samples": [4, 2],
        "per_step_label_length": [12.0, 30.0],
        "per_step_padding_positions": [0, 6],
        "per_step_elapsed_s": [1.0, 3.0],
    }
    train_flops.add_per_step_flops(result, points, peak=100.0)
    total = 4 * flops(12) + 2 * flops(30)
    assert result["mfu"] == pytest.approx(total / 4.0 / 100.0)
    # 6 padding positions, each charged as a 30th position: (flops(30) - flops(29)) apiece.
    without = total - 6 * (flops(30) - flops(29))
    assert result["mfu_without_padding_lower_bound"] == pytest.approx(without / 4.0 / 100.0)
    assert result["per_step_mfu"] == pytest.approx([4 * flops(12) / 100.0, 2 * flops(30) / 3.0 / 100.0])
