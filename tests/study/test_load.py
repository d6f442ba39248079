"""Live server on loopback: concurrent participants; kill -9 mid-load keeps every acknowledged answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_helpers import make_study

from benchmarks import study_load as bench


@pytest.mark.slow
def test_concurrent_participants_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    study = make_study(tmp_path, n_participants=15, n_images=4)
    port = bench.find_free_port()
    server = bench.start_server(study.run_dir, port)
    try:
        logs = bench.run_load(f"http://127.0.0.1:{port}", study.tokens, think_s=0.05, timeout_s=120)
    finally:
        server.terminate()
        server.wait(timeout=10)
    checks = bench.verify_database(study.db_url, logs)
    assert checks == {"lost": 0, "duplicated": 0, "wrong_row_counts": 0}
    assert all(log.finished for log in logs)
    assert sum(len(log.acknowledged) for log in logs) == 15 * 8  # practice + 2 task + 4 rating + 1 attention


@pytest.mark.slow
def test_kill_9_mid_load_keeps_every_acknowledged_answer(tmp_path: Path) -> None:
    study = make_study(tmp_path, n_participants=10, n_images=4)
    port = bench.find_free_port()
    holder = {"process": bench.start_server(study.run_dir, port)}
    killer = bench.kill_and_restart_later(
        holder["process"], study.run_dir, port, kill_after_s=1.5, down_s=0.5, holder=holder
    )
    try:
        logs = bench.run_load(f"http://127.0.0.1:{port}", study.tokens, think_s=0.1, timeout_s=120)
    finally:
        killer.join(timeout=70)
        holder["process"].terminate()
        holder["process"].wait(timeout=10)
    assert holder["process"].returncode is not None and killer.is_alive() is False
    checks = bench.verify_database(study.db_url, logs)
    assert checks == {"lost": 0, "duplicated": 0, "wrong_row_counts": 0}
    assert sum(log.retries for log in logs) > 0, (
        "the kill happened after the load finished; nothing was tested"
    )
    assert all(log.finished for log in logs)  # resumed through the same links after the restart
