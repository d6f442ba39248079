import importlib.util
import json
from pathlib import Path

PROBE = Path(__file__).parents[2] / "benchmarks" / "decode_attention.py"


def test_decode_attention_probe_times_every_case_on_the_cpu(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("decode_attention", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = json.loads(module.main(["--tiny", "--out", str(tmp_path / "attention.json")]).read_text())
    cases = report["results"]
    assert set(cases) == {"self, 8 cached", "self, 30 cached", "cross, per beam", "cross, beams share keys"}
    for row in cases.values():
        assert row["math"]["median_ms"] > 0 and row["math"]["max_abs_error_vs_fp32"] < 1e-5
