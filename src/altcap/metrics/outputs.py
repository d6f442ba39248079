"""Write what `altcap evaluate` produced: metrics.json, per_image.jsonl, metrics.md, metrics_bar.png/svg."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from altcap.data.manifest import write_jsonl_atomic
from altcap.metrics.accessibility import count_words
from altcap.metrics.config import EvaluateConfig
from altcap.metrics.content_report import render_content_markdown
from altcap.metrics.quality_split import render_quality_markdown
from altcap.provenance import build_provenance, sha256_file

if TYPE_CHECKING:
    import numpy as np

    from altcap.metrics.coco import CocoResult
    from altcap.metrics.inputs import EvalInputs

PER_IMAGE_METRICS = (
    "BLEU-4",
    "METEOR",
    "ROUGE-L",
    "CIDEr-D",
    "SPICE",
    "embedding_distance",
    "scene_graph_f1",
    "hallucinated_mentions",
)
CHART_NAME = "metrics_bar"
NOTES = {
    "ci": "percentile bootstrap over images; one seeded resampling shared by every metric and system",
    "BLEU": "corpus BLEU recomputed per resample from summed per-image n-gram counts (pycocoevalcap "
    "BleuScorer statistics, 'closest' reference length), not an average of sentence BLEU",
    "METEOR": "corpus METEOR per resample: the METEOR jar scores the summed per-image statistics",
    "CIDEr-D": "document frequencies come from the references of all scored images and stay fixed "
    "in resamples (resampling would count duplicated images' n-grams twice and shift the idf); "
    "resamples average the per-image scores",
    "ROUGE-L/SPICE": "resamples average the per-image scores, as the corpus value does",
    "FGD": "Frechet distance of sentence embeddings, lower is better; value via scipy.linalg.sqrtm, "
    "resamples via the eigenvalues of S_p S_r (same trace, faster); resampling repeats images and so "
    "inflates FGD; its percentile CI therefore comes from replicates shifted by their mean bias "
    "(centred on the value)",
    "comparisons": "diff = b - a on all images; CI and two-sided p from the paired bootstrap "
    "(null-shifted differences), multi-reference metrics only",
    "length_adjusted": "per pair and metric: raw_diff = mean per-image difference b - a; adjusted_diff = "
    "intercept of the per-image score difference regressed on the word-count difference (the "
    "difference at equal caption length); CIs and p from the shared image resampling; BLEU-4 and "
    "METEOR enter as sentence scores; a note when the raw CI excludes 0 and the adjusted CI covers it",
    "hallucination_rate": "CHAIR-style (Rohrbach et al. 2018): COCO objects (80 categories, CHAIR's "
    "synonyms) a caption names that no reference of the image names; CHAIR-i per mention, CHAIR-s per "
    "caption; lower is better; reference-based, so an object the references omit counts as hallucinated",
    "by_quality_flag": "per photo-quality flag of `data check` (metadata.quality_flags; an image may be in "
    "several groups) and 'no flags': means of per-image scores (BLEU-4, METEOR as sentence scores) and "
    "CHAIR-i per mention, each group resampled on its own; groups under min_images_for_ci images get no "
    "CI; null when the manifest has no quality_flags (run `altcap data check` and evaluate on its clean "
    "manifest)",
    "scene_graph_f1": "not SPICE: SPICE-like tuple F1 from SceneGraphParser on spaCy en_core_web_sm "
    "3.8.0, exact lemma matching; agreement with SPICE unknown unless SPICE ran on the same captions",
}


# Lives beside the writer, not in evaluate.py (which fills it), so writing never imports scoring.
@dataclass
class Scored:
    """Everything computed for one run, before it is written."""

    inputs: EvalInputs
    results: dict[str, dict[str, CocoResult]] = field(default_factory=dict)  # mode -> system -> result
    replicates: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)  # (mode, sys, metric)
    missing: dict[str, str] = field(default_factory=dict)


def make_json_ready(value: Any) -> Any:
    """NaN/inf become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: make_json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [make_json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temp file + rename (a crash never leaves half a file)."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp_name, path)


def build_per_image_rows(scored: Scored) -> list[dict[str, Any]]:
    """One row per (system, image) with the multi-reference per-image scores."""
    rows = []
    for system in scored.inputs.systems:
        per_image = scored.results["multi"][system.name].per_image
        for i, (image, caption) in enumerate(zip(scored.inputs.images, system.captions, strict=True)):
            row: dict[str, Any] = {"system": system.name, "image": image, "caption": caption}
            for metric in PER_IMAGE_METRICS:
                row[metric] = float(per_image[metric][i]) if metric in per_image else None
            row["length_words"] = count_words(caption)
            if "quality_flags" in scored.inputs.metadata[i]:
                row["quality_flags"] = list(scored.inputs.metadata[i]["quality_flags"] or [])
            if "hallucinated_objects" in per_image:
                row["hallucinated_objects"] = list(per_image["hallucinated_objects"][i])
            rows.append(make_json_ready(row))
    return rows


def format_value(entry: dict[str, Any] | None) -> str:
    """'0.612 [0.580, 0.640]' (or '-' when absent)."""
    if not entry or entry.get("value") is None:
        return "-"
    if entry.get("ci_low") is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def render_metric_table(metrics: dict[str, Any], block: str) -> list[str]:
    """Markdown rows: metric | each system [CI] | b - a [CI] | p, for each system after the first."""
    names = list(metrics["systems"])
    comparisons = {(c["b"], c["metric"]): c for c in metrics["comparisons"] if c["a"] == names[0]}
    with_diffs = block == "corpus" and len(names) > 1
    header = ["metric", *names]
    if with_diffs:
        for other in names[1:]:
            header += [f"{other} - {names[0]} [CI]", "p"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    metric_names = dict.fromkeys(m for n in names for m in metrics["systems"][n].get(block, {}))
    for metric in metric_names:
        cells = [metric] + [format_value(metrics["systems"][n].get(block, {}).get(metric)) for n in names]
        for other in names[1:] if with_diffs else []:
            comparison = comparisons.get((other, metric))
            cells += [
                format_value(comparison and {"value": comparison["diff"], **comparison}),
                f"{comparison['p_value']:.4f}" if comparison else "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(metrics: dict[str, Any]) -> str:
    """metrics.md: corpus table with paired differences, single-reference table, accessibility table."""
    lines = [
        f"# Evaluation: {metrics['refs']} (split {metrics['split']}, {metrics['n_images']} images)",
        "",
        "Values with 95% bootstrap CIs; FGD: lower is better.",
        "",
        "## Multi-reference",
        "",
    ]
    lines += render_metric_table(metrics, "corpus")
    if any("single_ref" in s for s in metrics["systems"].values()):
        lines += ["", "## Single reference (first caption)", "", *render_metric_table(metrics, "single_ref")]
    names = list(metrics["systems"])
    stats = list(next(iter(metrics["systems"].values()))["accessibility"])
    lines += [
        "",
        "## Accessibility",
        "",
        "| statistic | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for stat in stats:
        values = [metrics["systems"][n]["accessibility"][stat] for n in names]
        shown = ["-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in values]
        lines.append(f"| {stat} | " + " | ".join(shown) + " |")
    lines += render_content_markdown(metrics)
    quality = render_quality_markdown(metrics.get("by_quality_flag"))
    lines += ["", *quality[:-1]] if quality else []
    if metrics["missing"]:
        lines += ["", "## Not computed", ""] + [f"- **{k}**: {v}" for k, v in metrics["missing"].items()]
    if metrics["warnings"]:
        lines += ["", "## Input warnings", ""] + [f"- {w}" for w in metrics["warnings"]]
    return "\n".join(lines) + "\n"


def plot_bar_chart(metrics: dict[str, Any], out_dir: Path) -> None:
    """One panel per metric, one bar per system, 95% CI error bars; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI or servers
    import matplotlib.pyplot as plt

    names = list(metrics["systems"])
    metric_names = list(dict.fromkeys(m for n in names for m in metrics["systems"][n]["corpus"]))
    columns = min(3, len(metric_names))
    rows = math.ceil(len(metric_names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metric_names, strict=False):
        entries = [metrics["systems"][n]["corpus"].get(metric) or {"value": math.nan} for n in names]
        values = [e["value"] if e["value"] is not None else math.nan for e in entries]
        positions = range(len(names))
        ax.bar(positions, values, color=[f"C{i}" for i in positions])
        # Percentile CIs need not contain the point value (FGD's bootstrap is biased upward), so the
        # interval is drawn as a line from ci_low to ci_high rather than as +/- errors.
        for x, e in zip(positions, entries, strict=True):
            if e.get("ci_low") is not None:
                ax.errorbar(
                    [x],
                    [(e["ci_low"] + e["ci_high"]) / 2],
                    yerr=[(e["ci_high"] - e["ci_low"]) / 2],
                    color="black",
                    capsize=4,
                )
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_title(metric + (" (lower is better)" if metric == "FGD" else ""), fontsize=9)
    for ax in list(axes.flat)[len(metric_names) :]:
        ax.axis("off")
    fig.suptitle(f"{metrics['n_images']} images, multi-reference, 95% bootstrap CI", fontsize=10)
    fig.tight_layout()
    for suffix in ("png", "svg"):
        fig.savefig(out_dir / f"{CHART_NAME}.{suffix}", dpi=120)
    plt.close(fig)


def write_outputs(cfg: EvaluateConfig, metrics: dict[str, Any], scored: Scored) -> None:
    """Stamp provenance and notes into `metrics` (in place) and write every output file into cfg.out."""
    out_dir = cfg.out
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = build_provenance(
        cfg,
        model_id=cfg.embedding_model if cfg.fgd else None,
        manifest=cfg.refs,
        pred_sha256={s.name: sha256_file(s.pred_path) for s in scored.inputs.systems},
        seed=cfg.seed,
        bootstrap_samples=cfg.bootstrap_samples,
    )
    ready = make_json_ready({"provenance": provenance, **metrics, "notes": NOTES})
    metrics.clear()
    metrics.update(ready)
    write_text_atomic(out_dir / "metrics.json", json.dumps(ready, indent=2, ensure_ascii=False) + "\n")
    write_jsonl_atomic(out_dir / "per_image.jsonl", build_per_image_rows(scored))
    write_text_atomic(out_dir / "metrics.md", render_markdown(ready))
    plot_bar_chart(ready, out_dir)
