"""Training samples/s against batch size from a train_throughput JSON (altcap variants vs baselines).

python benchmarks/plot_train_throughput.py benchmarks/results/train_throughput-X.json docs/train-X.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot(report_path: Path, out: Path) -> Path:
    """altcap's samples/s per batch size, eager and compiled; each baseline as a horizontal line."""
    report = json.loads(report_path.read_text(encoding="utf-8"))
    results = report["results"]
    lines = {
        "altcap train (cached features)": ("altcap", "altcap_batch"),
        "altcap train, compile=true": ("altcap_compiled", "altcap_compiled_batch"),
    }
    fig, ax = plt.subplots(figsize=(6, 3.6))
    largest_batch = 1
    for label, (plain, sized) in lines.items():
        points = sorted(
            (r["batch_size"], r["samples_per_s"])
            for name, r in results.items()
            if name == plain or name.startswith(sized)
        )
        if points:
            ax.plot([b for b, _ in points], [s for _, s in points], marker="o", label=label)
            largest_batch = max(largest_batch, points[-1][0])
    base_batch = int(report["settings"]["batch_size"])
    for name, style, va in (
        ("A_tutorial_fp32", ":", "bottom"),
        ("B_peft_bf16", "--", "bottom"),
        ("B_dynamic", "-.", "top"),
    ):
        if name in results:
            ax.axhline(results[name]["samples_per_s"], linestyle=style, color="grey")
            ax.annotate(
                f"{name} (batch {base_batch})",
                (largest_batch, results[name]["samples_per_s"]),
                ha="right",
                va=va,
                fontsize=8,
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples/s")
    ax.set_title(f"{report['model_id']} on {report['device']}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


if __name__ == "__main__":
    print(plot(Path(sys.argv[1]), Path(sys.argv[2])))
