"""What the chat-VLM benchmarks share: log summaries, peaks kept across resets, child processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import chat_bench


def test_summarize_log_times_the_rows_after_the_warm_up() -> None:
    rows = [
        {"samples": 8, "elapsed_s": 10.0, "padded_tokens": 2400, "peak_gpu_memory_mb": 1000.0},
        {"samples": 8, "elapsed_s": 1.0, "padded_tokens": 2480, "peak_gpu_memory_mb": 3000.0},
        {"samples": 8, "elapsed_s": 1.0, "padded_tokens": 2480},
        {"event": "end"},
    ]
    summary = chat_bench.summarize_log(rows, skip=1)
    assert summary["logged_steps"] == 3 and summary["timed_steps"] == 2
    assert summary["samples_per_s"] == 8.0 and summary["mean_padded_length"] == 310.0
    assert summary["log_peak_allocated_gb"] == round(3000 * 2**20 / 1e9, 2)


def test_peaks_before_each_reset_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    peaks = iter([5e9, 7e9])
    resets = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: next(peaks))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: resets.append(a))
    fake_reset = torch.cuda.reset_peak_memory_stats
    with chat_bench.keep_earlier_peaks() as earlier:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.reset_peak_memory_stats()
    assert earlier == [5.0, 7.0] and len(resets) == 2
    assert torch.cuda.reset_peak_memory_stats is fake_reset  # restored


def test_a_failing_child_reports_its_exit_and_stderr(tmp_path: Path) -> None:
    result = chat_bench.run_child("benchmarks.no_such_module", [], tmp_path / "r.json", timeout_s=60)
    assert result["error"].startswith("child exited with 1")
    assert "No module named benchmarks.no_such_module" in result["stderr_tail"]
