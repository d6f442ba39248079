"""Load test of the study server: N simulated participants at once against a live server on loopback.

Run:  python -m benchmarks.study_load --participants 60            (writes benchmarks/results/study_load.json)
      python -m benchmarks.study_load --participants 20 --kill-after-s 3   (kill -9 mid-load, restart, verify)

Run it from the repository root: the simulated participants fill forms with the study tests'
helpers (`tests/study/study_helpers.py`), the same ones the route tests use.

Each simulated participant opens its link, consents, reads the instructions and answers every trial
(with a short random "reading time" before each submit), retrying a submit whose connection dropped.
Afterwards the database is checked against what the clients saw acknowledged (HTTP 303): every
acknowledged trial stored, exactly the expected answer rows, none twice.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import func, select

from altcap.provenance import build_provenance
from altcap.study.db import Answer, Participant, Submission, Trial, make_engine, make_session_factory
from altcap.study.freeze import hash_token
from benchmarks.common import RESULTS_DIR, describe_hardware, write_report
from tests.study.study_helpers import fill_form, make_study, parse_form, trial_index_of

RESULTS_PATH = RESULTS_DIR / "study_load.json"


@dataclass
class ClientLog:
    """What one simulated participant saw: acknowledged trials, expected rows, submit latencies."""

    token: str
    acknowledged: dict[int, int] = field(default_factory=dict)  # trial_index -> expected answer rows
    latencies_s: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    finished: bool = False
    retries: int = 0


def find_free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run_dir: Path, port: int, db_url: str | None = None) -> subprocess.Popen:
    """Start `altcap study serve` in a subprocess and wait until it answers."""
    command = [
        sys.executable,
        "-m",
        "altcap.cli",
        "study",
        "serve",
        "--run-dir",
        str(run_dir),
        "--port",
        str(port),
    ]
    if db_url:
        command += ["--db", db_url]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start within 60 s")


def _expected_rows(form_data: dict[str, str], radio_groups: int) -> int:
    return radio_groups + bool(form_data.get("answer_text")) + bool(form_data.get("comment"))


def _request(
    client: httpx.Client, method: str, url: str, log: ClientLog, deadline: float, **kwargs
) -> httpx.Response:
    """Send, retrying the SAME request after a dropped connection (server killed / restarting)."""
    while True:
        try:
            return client.request(method, url, **kwargs)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            log.retries += 1
            time.sleep(0.2)


def run_participant(base_url: str, token: str, think_s: float, deadline: float, seed: int) -> ClientLog:
    """One participant from link to thank-you page."""
    rng, log = random.Random(seed), ClientLog(token)
    with httpx.Client(base_url=base_url, timeout=30, follow_redirects=False) as client:
        url = _request(client, "GET", f"/p/{token}", log, deadline).headers["location"]
        while "/done" not in url and time.monotonic() < deadline:
            page = _request(client, "GET", url, log, deadline)
            form = parse_form(page.text)
            data = fill_form(form, comment=rng.choice(["", "ok", "Says nothing about colour."]))
            time.sleep(rng.uniform(0, 2 * think_s))
            started = time.perf_counter()
            response = _request(client, "POST", form.action, log, deadline, data=data)
            elapsed = time.perf_counter() - started
            if response.status_code != 303:
                raise RuntimeError(f"{form.action}: HTTP {response.status_code}")
            index = trial_index_of(form.action)
            if index is not None:
                log.latencies_s.append(elapsed)
                log.server_ms.append(float(response.headers["server-timing"].split("dur=")[1]))
                log.acknowledged[index] = _expected_rows(data, len(form.radios))
            url = response.headers["location"]
        log.finished = "/done" in url
    return log


def verify_database(db_url: str, logs: list[ClientLog]) -> dict[str, int]:
    """Compare stored submissions/answers with what clients saw acknowledged."""
    lost = duplicated = wrong_rows = 0
    with make_session_factory(make_engine(db_url))() as db:
        for log in logs:
            pid = db.scalar(select(Participant.id).where(Participant.token_sha256 == hash_token(log.token)))
            stored = dict(
                db.execute(
                    select(Trial.trial_index, func.count(Answer.id))
                    .join(Submission, Submission.trial_id == Trial.id)
                    .outerjoin(Answer, Answer.trial_id == Trial.id)
                    .where(Trial.participant_id == pid)
                    .group_by(Trial.trial_index)
                ).all()
            )
            lost += sum(1 for index in log.acknowledged if index not in stored)
            wrong_rows += sum(
                1 for index, rows in log.acknowledged.items() if stored.get(index, rows) != rows
            )
        keys = select(Answer.participant_id, Answer.trial_id, Answer.item, Answer.position)
        total = db.scalar(select(func.count()).select_from(keys.subquery())) or 0
        distinct = db.scalar(select(func.count()).select_from(keys.distinct().subquery())) or 0
        duplicated = total - distinct
    return {"lost": lost, "duplicated": duplicated, "wrong_row_counts": wrong_rows}


def run_load(base_url: str, tokens: list[str], think_s: float, timeout_s: float) -> list[ClientLog]:
    """All participants at once (one thread each, so concurrency is bounded by the token count)."""
    deadline = time.monotonic() + timeout_s
    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        futures = [
            pool.submit(run_participant, base_url, t, think_s, deadline, i) for i, t in enumerate(tokens)
        ]
        return [f.result() for f in futures]


def kill_and_restart_later(
    process: subprocess.Popen, run_dir: Path, port: int, kill_after_s: float, down_s: float, holder: dict
) -> threading.Thread:
    """kill -9 the server after kill_after_s, start it again down_s later (the new process in holder)."""

    def worker() -> None:
        time.sleep(kill_after_s)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        time.sleep(down_s)
        holder["process"] = start_server(run_dir, port)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    return thread


def summarize(logs: list[ClientLog], checks: dict[str, int], elapsed_s: float, think_s: float) -> dict:
    """Latency percentiles (ms) and integrity counts."""
    latencies_ms = np.array([x for log in logs for x in log.latencies_s]) * 1000
    server_ms = [x for log in logs for x in log.server_ms]
    return {
        "participants": len(logs),
        "finished": sum(log.finished for log in logs),
        "submits": int(latencies_ms.size),
        "retries": sum(log.retries for log in logs),
        "p50_submit_ms": round(float(np.percentile(latencies_ms, 50)), 1),
        "p95_submit_ms": round(float(np.percentile(latencies_ms, 95)), 1),
        "p99_submit_ms": round(float(np.percentile(latencies_ms, 99)), 1),
        "max_submit_ms": round(float(latencies_ms.max()), 1),
        "p95_server_submit_ms": round(float(np.percentile(server_ms, 95)), 1),
        "elapsed_s": round(elapsed_s, 1),
        "mean_think_s": think_s,
        "cpu_count": os.cpu_count(),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        **checks,
    }


def main(argv: list[str] | None = None) -> Path:
    """Run the load test, verify the database, print and write the summary; returns the JSON path."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=60)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--think-s", type=float, default=0.5, help="Mean reading time before each submit.")
    parser.add_argument(
        "--kill-after-s", type=float, default=None, help="kill -9 the server after this long."
    )
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    hardware = describe_hardware()
    with tempfile.TemporaryDirectory() as tmp:
        study = make_study(Path(tmp), n_participants=args.participants, n_images=args.images)
        port = find_free_port()
        holder = {"process": start_server(study.run_dir, port)}
        if args.kill_after_s is not None:
            kill_and_restart_later(holder["process"], study.run_dir, port, args.kill_after_s, 1.0, holder)
        started = time.monotonic()
        try:
            logs = run_load(f"http://127.0.0.1:{port}", study.tokens, args.think_s, args.timeout_s)
        finally:
            holder["process"].terminate()
            holder["process"].wait(timeout=10)
        summary = summarize(
            logs, verify_database(study.db_url, logs), time.monotonic() - started, args.think_s
        )
    summary["killed_mid_load"] = args.kill_after_s is not None
    summary["provenance"] = build_provenance(
        None, benchmark="study_load", argv_args=vars(args) | {"out": str(args.out)}
    )
    summary["hardware"] = hardware
    write_report(args.out, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "provenance"}, indent=2))
    return args.out


if __name__ == "__main__":
    main()
