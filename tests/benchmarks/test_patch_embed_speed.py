"""benchmarks/patch_embed_speed.py runs on the CPU and reports both forms agreeing."""

import json

from benchmarks import patch_embed_speed


def test_report_times_both_forms_and_their_outputs_agree(tmp_path):
    out = patch_embed_speed.main(
        [
            "--patches",
            "64",
            "--channels",
            "16",
            "--dtype",
            "float32",
            "--repeats",
            "1",
            "--out",
            str(tmp_path / "p.json"),
        ]
    )
    report = json.loads(out.read_text())
    assert set(report["seconds_per_call"]) == {"conv3d", "linear"}
    assert report["linear_over_conv3d_speedup"] > 0
    assert report["max_abs_difference"] < 1e-4
    assert report["hardware"] and report["versions"]
