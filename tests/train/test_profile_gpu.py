"""benchmarks/profile_gpu.py: both modes profile a tiny BLIP-2 on CPU; CUDA kernels count once."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch.autograd import DeviceType

from benchmarks import profile_gpu, profile_setup, profile_summary


@pytest.mark.slow
def test_train_mode_profiles_altcap_step_and_writes_trace(tmp_path: Path) -> None:
    argv = ["train", "--tiny", "--steps", "2", "--warmup-steps", "1", "--batch-size", "4", "--trace"]
    out = profile_gpu.main([*argv, "--out", str(tmp_path / "train.json")])
    report = json.loads(out.read_text())
    result = report["results"]
    assert len(result["step_wall_s"]) == 2 and result["step_wall_s_mean"] > 0
    assert len(result["losses"]) == 2 and all(math.isfinite(loss) for loss in result["losses"])
    rows = result["top_ops_by_self_cpu"]
    assert 0 < len(rows) <= 25 and rows[0]["self_cpu_ms_per_step"] >= rows[-1]["self_cpu_ms_per_step"] > 0
    # The step's matmuls must be profiled: forward and backward both multiply matrices.
    assert any(row["name"] in {"aten::mm", "aten::addmm", "aten::bmm"} for row in rows)
    memory = result["memory"]
    assert memory["parameters_trainable_bytes"] > 0 and memory["parameters_frozen_bytes"] > 0
    # AdamW keeps two moments per trainable weight (plus step counters).
    assert memory["optimizer_state_bytes"] >= 2 * memory["parameters_trainable_bytes"]
    # On CPU no CUDA figure is made up.
    assert result["step_kernel_time_ms"] is None and result["top_ops_by_self_cuda"] is None
    assert memory["peak_allocated_bytes"] is None
    assert report["settings"]["train_config"]["lora"]["r"] == 16
    assert report["versions"]["torch"] and report["versions"]["peft"] and report["device"] == "cpu"
    trace = json.loads(gzip.decompress(Path(report["trace"]).read_bytes()))
    assert any(event.get("name") == "altcap_step" for event in trace["traceEvents"])


@pytest.mark.slow
def test_caption_mode_profiles_generate(tmp_path: Path) -> None:
    argv = ["caption", "--tiny", "--steps", "2", "--warmup-steps", "1", "--batch-size", "2"]
    argv += ["--num-beams", "2", "--max-new-tokens", "3", "--out", str(tmp_path / "caption.json")]
    report = json.loads(profile_gpu.main(argv).read_text())
    result = report["results"]
    assert result["step_wall_s_mean"] > 0 and len(result["first_captions"]) == 2
    assert len(result["top_ops_by_self_cpu"]) > 0
    generation = report["settings"]["generation"]
    assert generation["min_new_tokens"] == generation["max_new_tokens"] == 3 and generation["num_beams"] == 2
    memory = result["memory"]
    assert memory["parameters_trainable_bytes"] == 0 and memory["parameters_frozen_bytes"] > 0


def fake_event(name: str, device: bool, cpu_us: float, cuda_us: float, annotation: bool = False):
    return SimpleNamespace(
        name=name,
        device_type=DeviceType.CUDA if device else DeviceType.CPU,
        is_user_annotation=annotation,
        self_cpu_time_total=cpu_us,
        self_device_time_total=cuda_us,
    )


def test_cuda_summary_counts_each_kernel_once(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        fake_event("aten::mm", False, 30, 400),  # the op carries its kernel's time too
        fake_event("sm90_gemm", True, 0, 400),
        fake_event("aten::add", False, 10, 100),
        fake_event("elementwise_kernel", True, 0, 100),
        fake_event("Memcpy HtoD (Pageable -> Device)", True, 0, 50),
        fake_event("altcap_step", True, 0, 5000, annotation=True),  # GPU copy of the step's range
        fake_event("[memory]", False, 0, 0),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    summary = profile_summary.summarize_events(SimpleNamespace(events=lambda: events), 1, 0.001)
    assert summary["step_kernel_time_ms"] == pytest.approx(0.55)  # 400 + 100 + 50 us
    assert summary["gpu_busy_fraction"] == pytest.approx(0.55)
    assert summary["kernel_launches_per_step"] == 2  # the copy is no launch
    assert [r["name"] for r in summary["top_kernels_by_self_cuda"]][:1] == ["sm90_gemm"]
    assert summary["top_ops_by_self_cuda"][0] == {
        "name": "aten::mm",
        "calls_per_step": 1,
        "self_cuda_ms_per_step": 0.4,
        "percent": 80.0,
    }


def test_jpeg_folder_captions_come_from_captions_txt(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "captions.txt").write_text("image,caption\na.jpg,a red door\na.jpg,second\n")
    args = SimpleNamespace(images=tmp_path, batch_size=2)
    manifest = profile_setup.write_manifest(args, tmp_path / "data")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [Path(r["image"]).name for r in rows] == ["a.jpg", "b.jpg"]
    assert rows[0]["captions"] == ["a red door"] and rows[1]["captions"][0]  # b: a synthetic sentence
