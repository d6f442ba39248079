"""Plots from train_throughput JSON: samples/s against batch size, or every timed step of runs.

python -m benchmarks.plot_train_throughput benchmarks/results/train_throughput-X.json docs/train-X.png
python -m benchmarks.plot_train_throughput steps docs/train-steps.png "label=benchmarks/results/X.json" ...
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
    return save_figure(fig, out)


def plot_steps(runs: list[tuple[str, Path]], out: Path, variant: str = "altcap_compiled_batch384") -> Path:
    """One line per run: each timed step's MFU (samples/s where no GPU peak is known), so epoch
    starts, short last batches and one-off stalls show where a mean hides them."""
    reports = {path: json.loads(path.read_text(encoding="utf-8"))["results"] for _, path in runs}
    missing = [str(path) for path, results in reports.items() if variant not in results]
    if missing:
        raise SystemExit(f"no {variant!r} result in {', '.join(missing)}; pass the variant that ran")
    results = [reports[path][variant] for _, path in runs]
    use_mfu = all(r.get("per_step_mfu") for r in results)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (label, _), result in zip(runs, results, strict=True):
        values = [100 * m for m in result["per_step_mfu"]] if use_mfu else result["per_step_samples_per_s"]
        ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
    if use_mfu:
        ax.axhline(30, linestyle="--", color="grey")
        ax.annotate("30 % target", (1, 30), va="bottom", fontsize=8)
    ax.set_xlabel("timed step")
    ax.set_ylabel("MFU of the step (%, padding counted)" if use_mfu else "samples/s")
    ax.set_title(f"{variant}: every timed step", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, out)


def save_figure(fig: plt.Figure, out: Path) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    """`REPORT.json OUT.png` plots one report; `steps OUT.png label=REPORT.json ...` plots steps."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__)
    if argv[0] == "steps":
        malformed = [arg for arg in argv[2:] if "=" not in arg]
        if malformed or len(argv) < 3:
            got = malformed or "no runs"
            raise SystemExit(f"give each run as label=path/to/train_throughput.json (got {got})")
        pairs = [arg.split("=", 1) for arg in argv[2:]]
        out = plot_steps([(label, Path(path)) for label, path in pairs], Path(argv[1]))
    else:
        out = plot(Path(argv[0]), Path(argv[1]))
    print(out)
    return out


if __name__ == "__main__":
    main()
