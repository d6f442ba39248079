"""Benchmark `altcap data check` on the whole real Flickr8k (8,091 images); target: under 60 s on 2 cores.

Run: python benchmarks/data_check.py [--flickr8k DIR] [--workers 2]
Writes benchmarks/results/data_check.json (hardware, versions, seconds, images/s, counts per code).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path

from altcap.data.check import run_data_check
from altcap.data.configs import DataCheckConfig, DataImportConfig
from altcap.data.importer import run_data_import
from altcap.provenance import package_versions

RESULTS = Path(__file__).parent / "results" / "data_check.json"


def describe_cpu() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform's guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_benchmark(flickr8k: Path, workers: int) -> dict:
    """Import Flickr8k to a temp folder, time `run_data_check` on it, and return the measurements."""
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
        "hardware": {
            "cpu": describe_cpu(),
            "cpu_count": os.cpu_count(),
            "workers": workers,
            "platform": platform.platform(),
        },
        "versions": {
            **package_versions(),
            "pillow": metadata.version("pillow"),
            "imagehash": metadata.version("imagehash"),
        },
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


def main() -> None:
    """Parse arguments, run, print and save the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flickr8k", type=Path, default=Path("/work/shared/data/flickr8k"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not (args.flickr8k / "Flickr8k.token.txt").is_file():
        raise SystemExit(f"{args.flickr8k}: no Flickr8k.token.txt; pass --flickr8k DIR")
    result = run_benchmark(args.flickr8k, args.workers)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
