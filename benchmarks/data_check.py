"""Benchmark `altcap data check` on the whole real Flickr8k (8,091 images); target: under 60 s on 2 cores.

Run: python -m benchmarks.data_check [--flickr8k DIR] [--workers 2]
Writes benchmarks/results/data_check.json (hardware, versions, seconds, images/s, counts per code).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from altcap.data.check import run_data_check
from altcap.data.configs import DataCheckConfig, DataImportConfig
from altcap.data.importer import run_data_import
from benchmarks.common import FLICKR8K, RESULTS_DIR, collect_versions, describe_hardware, write_report

RESULTS = RESULTS_DIR / "data_check.json"


def run_benchmark(flickr8k: Path, workers: int) -> dict:
    """Import Flickr8k to a temp folder, time `run_data_check` on it, and return the measurements."""
    hardware = describe_hardware()  # before the run: its load average is the machine's, not ours
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_data_import(DataImportConfig(format="flickr8k", source=flickr8k, out_dir=Path(tmp) / "ds"))
        import_seconds = time.perf_counter() - started
        cfg = DataCheckConfig(
            manifest=Path(tmp) / "ds" / "manifest.jsonl", out_dir=Path(tmp) / "chk", workers=workers
        )
        started = time.perf_counter()
        report = run_data_check(cfg)
        check_seconds = time.perf_counter() - started
    summary = report["summary"]
    return {
        "benchmark": "altcap data check on Flickr8k",
        "dataset": str(flickr8k),
        "hardware": {**hardware, "workers": workers},
        "versions": collect_versions(["pillow", "imagehash"]),
        "import_seconds": round(import_seconds, 2),
        "check_seconds": round(check_seconds, 2),
        "images": summary["images_checked"],
        "images_per_second": round(summary["images_checked"] / check_seconds, 1),
        "target_seconds": 60,
        "summary": {
            k: summary[k]
            for k in (
                "records",
                "captions",
                "errors",
                "warnings",
                "infos",
                "removed_records",
                "removed_captions",
                "duplicate_groups",
            )
        },
        "counts_per_code": report["counts_per_code"],
    }


def main(argv: list[str] | None = None) -> Path:
    """Parse arguments, run, print and save the result; returns the JSON path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flickr8k", type=Path, default=FLICKR8K)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not (args.flickr8k / "Flickr8k.token.txt").is_file():
        raise SystemExit(f"{args.flickr8k}: no Flickr8k.token.txt; pass --flickr8k DIR")
    result = run_benchmark(args.flickr8k, args.workers)
    out = write_report(args.out, result)
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
