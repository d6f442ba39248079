import json
from pathlib import Path

from benchmarks import decode_attention


def test_decode_attention_probe_times_every_case_on_the_cpu(tmp_path: Path) -> None:
    out = decode_attention.main(["--tiny", "--out", str(tmp_path / "attention.json")])
    report = json.loads(out.read_text())
    cases = report["results"]
    assert set(cases) == {"self, 8 cached", "self, 30 cached", "cross, per beam", "cross, beams share keys"}
    for row in cases.values():
        assert row["math"]["median_ms"] > 0 and row["math"]["max_abs_error_vs_fp32"] < 1e-5
