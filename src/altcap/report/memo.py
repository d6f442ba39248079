"""The go/no-go memo (issue #7): gather inputs, pick sample images by a stated rule, render Markdown.

The memo never computes a new number: every figure it prints is read from analysis.json,
metrics.json, per_image.jsonl, power.json or the training run's files (a test checks this).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from altcap.analysis.markdown import fmt, render_strata
from altcap.report.metric_context import describe_metric_context
from altcap.report.samples import SAMPLE_RULE, build_samples, pick_samples
from altcap.report.training import TrainRunFiles, describe_training

__all__ = ["SAMPLE_RULE", "MemoInputs", "pick_samples", "render_memo_markdown"]
TEMPLATES = Path(__file__).parent / "templates"
# What each criterion's estimate measures, so a negative "drop" is not read as a loss
CRITERION_LABELS = {
    "usefulness": "usefulness: median per-participant gain",
    "hallucination": "hallucination rate rise (fine-tuned - base)",
    "task_accuracy": "task accuracy drop (base - fine-tuned)",
    "metrics": "automatic metrics",
}
METRIC_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE", "FGD")


@dataclass
class MemoInputs:
    """Everything the memo is built from (read once, passed to the template)."""

    analysis: dict[str, Any]
    metrics: dict[str, Any] | None = None
    per_image: list[dict[str, Any]] = field(default_factory=list)
    train: TrainRunFiles | None = None
    power: dict[str, Any] | None = None
    captions: dict[str, dict[str, str]] = field(default_factory=dict)
    image_dirs: list[Path] = field(default_factory=list)
    input_files: list[Path] = field(default_factory=list)

    @property
    def simulated(self) -> bool:
        """True when any input is simulated."""
        return bool(self.analysis.get("simulated") or (self.metrics or {}).get("simulated"))


def build_metric_rows(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per metric: base and finetuned value with CI, and the paired comparison."""
    if not metrics:
        return []
    systems = metrics.get("systems", {})
    comparisons = {
        c["metric"]: c
        for c in metrics.get("comparisons", [])
        if (c.get("a"), c.get("b")) == ("base", "finetuned")
    }
    names = [m for m in METRIC_ORDER if any(m in s.get("corpus", {}) for s in systems.values())]
    return [
        {
            "metric": m,
            "base": systems.get("base", {}).get("corpus", {}).get(m),
            "finetuned": systems.get("finetuned", {}).get("corpus", {}).get(m),
            "cmp": comparisons.get(m),
        }
        for m in names
    ]


def describe_strength(tau: float) -> str:
    """A word for the size of a Kendall tau (|tau| < 0.1 negligible, < 0.3 weak, < 0.5 moderate)."""
    size = abs(tau)
    return "negligible" if size < 0.1 else "weak" if size < 0.3 else "moderate" if size < 0.5 else "strong"


def describe_validity(validity: dict[str, Any] | None) -> str:
    """The sentence on which automatic metric tracks BLV usefulness (and task accuracy) here, how strongly."""
    best = (validity or {}).get("best", {})
    if not best.get("usefulness"):
        return "No metric-validity analysis was possible (no per-image metrics matched the study images)."
    sentences = []
    for outcome, label in (("usefulness", "usefulness"), ("task_accuracy", "task-accuracy")):
        if not best.get(outcome):
            continue
        metric = best[outcome]["metric"]
        row = validity["outcomes"][outcome][metric]
        numbers = (
            f"Kendall tau {fmt(row['tau'])}, 95% CI {fmt(row['ci_low'])} to {fmt(row['ci_high'])}, "
            f"{row['n_images']} images"
        )
        strength = describe_strength(row["tau"])
        if row["ci_low"] is not None and row["ci_low"] > 0:
            sentences.append(
                f"{metric} tracked the per-image {label} gain most closely of the automatic metrics, "
                f"a {strength} relation ({numbers})."
            )
        else:
            sentences.append(
                f"No automatic metric clearly tracked the per-image {label} gain: the highest Kendall tau, "
                f"{metric}'s, is {strength} and its CI includes zero ({numbers})."
            )
    return " ".join(sentences)


def describe_power(power: dict[str, Any] | None) -> str:
    """The sentence reporting the pre-study power analysis (power.json of `altcap study power`)."""
    if not power:
        return (
            "No power analysis was given (`altcap study power --out power.json`, then `altcap memo --power`)."
        )
    share, config = power["power"], power.get("config") or {}
    return (
        f"Planned power (simulation, run before the study): {fmt(share['share'])} "
        f"(95% CI {fmt(share['ci_low'])} to {fmt(share['ci_high'])}) to detect a log-odds shift of "
        f"{fmt(config.get('effect'))} with {config.get('n_participants')} participants at one-sided "
        f"alpha {fmt(power.get('alpha'))}, from {share['n']} simulated studies."
    )


def describe_strata(analysis: dict[str, Any]) -> list[str]:
    """The memo's usefulness tables by context and by photo-quality flag (those the analysis has).

    Args:
        analysis: analysis.json.

    Returns:
        One Markdown block per stratum the analysis reports (none when the study had no contexts
        or quality flags).
    """
    titles = (
        ("by_context", "Usefulness by context (where the image appears)"),
        ("by_quality_flag", "Usefulness by photo quality flag"),
    )
    blocks = [render_strata(analysis.get(key), title, level=3) for key, title in titles]
    return ["\n".join(lines) for lines in blocks if lines]


def render_memo_markdown(
    inputs: MemoInputs,
    charts: dict[str, str],
    provenance_lines: list[str],
    out_dir: Path | None = None,
) -> str:
    """Render memo.md from the inputs with the Jinja2 template.

    Args:
        inputs: the memo inputs.
        charts: chart name -> file name inside the memo folder (likert, validity, loss).
        provenance_lines: "path (sha256 prefix)" lines for the inputs.
        out_dir: the memo folder sample thumbnails are written to (None: no thumbnails).

    Returns:
        The Markdown text.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    samples, rule = build_samples(inputs.per_image, inputs.captions, inputs.image_dirs, out_dir)
    return env.get_template("memo.md.j2").render(
        a=inputs.analysis,
        simulated=inputs.simulated,
        metric_rows=build_metric_rows(inputs.metrics),
        missing=(inputs.metrics or {}).get("missing", {}),
        metric_context=describe_metric_context(inputs.metrics),
        training=describe_training(inputs.train),
        validity_sentence=describe_validity(inputs.analysis.get("metric_validity")),
        strata_sections=describe_strata(inputs.analysis),
        power_sentence=describe_power(inputs.power),
        criterion_labels=CRITERION_LABELS,
        samples=samples,
        sample_rule=rule,
        charts=charts,
        provenance_lines=provenance_lines,
    )
