"""The go/no-go memo (issue #7): gather inputs, pick sample images by a stated rule, render Markdown.

The memo never computes a new number: every figure it prints is read from analysis.json,
metrics.json, per_image.jsonl or the training run's provenance.json (a test checks this).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from altcap.report.analysis_md import fmt

TEMPLATES = Path(__file__).parent / "templates"
METRIC_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE", "FGD")
SAMPLE_RULE = (
    "the images at the first decile, the median and the ninth decile of the per-image CIDEr-D change "
    "(fine-tuned minus base), so good, typical and bad cases all appear"
)
FALLBACK_RULE = "no per-image CIDEr-D available: the first images in alphabetical order"


@dataclass
class MemoInputs:
    """Everything the memo is built from (read once, passed to the template)."""

    analysis: dict[str, Any]
    metrics: dict[str, Any] | None = None
    per_image: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] | None = None
    captions: dict[str, dict[str, str]] = field(default_factory=dict)
    input_files: list[Path] = field(default_factory=list)

    @property
    def simulated(self) -> bool:
        """True when any input is simulated."""
        return bool(self.analysis.get("simulated") or (self.metrics or {}).get("simulated"))


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON file; errors name the file and the command that writes it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); regenerate the {what}") from err


def pick_samples(per_image: list[dict[str, Any]], metric: str = "CIDEr-D") -> tuple[list[str], str]:
    """Images at the 10th / 50th / 90th percentile of the per-image metric change, and the rule used.

    Args:
        per_image: per_image.jsonl rows (system, image, metric values).
        metric: the metric ranked on.

    Returns:
        (images, rule sentence).
    """
    by_system: dict[str, dict[str, float]] = {}
    for row in per_image:
        if row.get(metric) is not None:
            by_system.setdefault(row["system"], {})[row["image"]] = row[metric]
    base, tuned = by_system.get("base", {}), by_system.get("finetuned", {})
    common = sorted(set(base) & set(tuned), key=lambda im: (tuned[im] - base[im], im))
    if len(common) < 3:
        return [], FALLBACK_RULE
    picks = [common[round(q * (len(common) - 1))] for q in (0.1, 0.5, 0.9)]
    return list(dict.fromkeys(picks)), SAMPLE_RULE


def build_samples(inputs: MemoInputs) -> tuple[list[dict[str, Any]], str]:
    """Sample rows (image, captions, CIDEr-D per system) chosen by `pick_samples`."""
    images, rule = pick_samples(inputs.per_image)
    captions = {s: dict(c) for s, c in inputs.captions.items()}
    scores: dict[tuple[str, str], Any] = {}
    for row in inputs.per_image:
        captions.setdefault(row["system"], {}).setdefault(row["image"], row.get("caption", ""))
        scores[(row["system"], row["image"])] = row.get("CIDEr-D")
    if not images:
        images = sorted(set(captions.get("base", {})) & set(captions.get("finetuned", {})))[:3]
    rows = [
        {
            "image": image,
            "base": captions.get("base", {}).get(image, ""),
            "finetuned": captions.get("finetuned", {}).get(image, ""),
            "cider_base": scores.get(("base", image)),
            "cider_finetuned": scores.get(("finetuned", image)),
        }
        for image in images
    ]
    return rows, rule


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


def describe_training(train: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) pairs from the run's provenance.json: model, data, LoRA settings, compute."""
    if not train:
        return []
    config = train.get("config") or {}
    lora = config.get("lora") or {}
    pairs = [
        ("base model", train.get("model_id")),
        ("family", train.get("family")),
        ("training data", train.get("manifest")),
        ("train / val examples", _join(train.get("train_examples"), train.get("val_examples"))),
        ("LoRA", ", ".join(f"{k}={v}" for k, v in lora.items() if v is not None) or None),
        ("LoRA targets", ", ".join(train.get("lora_targets") or []) or None),
        ("steps / epochs", _join(train.get("final_step"), train.get("epochs_completed"))),
        (
            "best validation loss",
            fmt(train["best_val_loss"]) if train.get("best_val_loss") is not None else None,
        ),
        ("precision", train.get("precision_used")),
    ]
    return [(label, str(value)) for label, value in pairs if value not in (None, "")]


def _join(*values: Any) -> str | None:
    return " / ".join(str(v) for v in values) if all(v is not None for v in values) else None


def describe_validity(validity: dict[str, Any] | None) -> str:
    """The one sentence on which automatic metric tracks BLV usefulness here."""
    best = (validity or {}).get("best", {}).get("usefulness")
    if not best:
        return "No metric-validity analysis was possible (no per-image metrics matched the study images)."
    row = validity["outcomes"]["usefulness"][best["metric"]]
    return (
        f"Of the automatic metrics, {best['metric']} tracked the per-image usefulness gain most closely "
        f"(Kendall tau {fmt(row['tau'])}, 95% CI {fmt(row['ci_low'])} to {fmt(row['ci_high'])}, "
        f"{row['n_images']} images)."
    )


def render_memo_markdown(inputs: MemoInputs, charts: dict[str, str], provenance_lines: list[str]) -> str:
    """Render memo.md from the inputs with the Jinja2 template.

    Args:
        inputs: the memo inputs.
        charts: chart name -> file name inside the memo folder (likert, validity, loss).
        provenance_lines: "path (sha256 prefix)" lines for the inputs.

    Returns:
        The Markdown text.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    samples, rule = build_samples(inputs)
    return env.get_template("memo.md.j2").render(
        a=inputs.analysis,
        simulated=inputs.simulated,
        metric_rows=build_metric_rows(inputs.metrics),
        missing=(inputs.metrics or {}).get("missing", {}),
        training=describe_training(inputs.train),
        validity_sentence=describe_validity(inputs.analysis.get("metric_validity")),
        samples=samples,
        sample_rule=rule,
        charts=charts,
        provenance_lines=provenance_lines,
    )
