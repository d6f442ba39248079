"""What the memo's automatic metrics can and cannot tell (issue #29).

COCO metrics measure agreement with sighted annotators' references. The memo states that they are
secondary to the study's usefulness measures, reports caption length, the object hallucination rate
and the offline scene-graph F1 (not SPICE) beside them, and says when the fine-tuned model's metric
gain comes with shorter captions or is explained by length alone. Every number is read from
metrics.json.
"""

from __future__ import annotations

from typing import Any

from altcap.analysis.markdown import fmt

# Fixed citation text (a test strips these before checking that every memo number comes from inputs).
KREISS_2022 = 'Kreiss et al. (2022, "Context Matters for Image Descriptions for Accessibility")'
MACLEOD_2017 = "MacLeod et al. (CHI 2017)"
CITATIONS = (KREISS_2022, MACLEOD_2017)
SECONDARY_STATEMENT = (
    "These metrics score agreement with sighted annotators' reference captions; they are secondary "
    "to the usefulness the user study measures. "
    f"{KREISS_2022} found that the referenceless CLIPScore aligned poorly with blind and low-vision "
    "participants' ratings because it ignores the context an image appears in, and that description "
    "length alone tracked those ratings closely; so caption length is reported beside every metric. "
    f"{MACLEOD_2017} found that blind users trust automatic captions and fill in details to reconcile "
    "a wrong one with its context; so the rate of objects a caption names that no reference names "
    "(CHAIR-style hallucination rate) is reported too."
)
COCO_GAIN_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
PAIR = ("base", "finetuned")


def format_interval(entry: dict[str, Any] | None) -> str:
    """'0.05 (0.03-0.07)', or '-' when absent."""
    if not entry or entry.get("value") is None:
        return "-"
    if entry.get("ci_low") is None:
        return fmt(entry["value"])
    return f"{fmt(entry['value'])} ({fmt(entry['ci_low'])}-{fmt(entry['ci_high'])})"


def build_context_rows(systems: dict[str, Any]) -> list[dict[str, str]]:
    """One row per system with length, CHAIR-i, CHAIR-s and the scene-graph F1 (not SPICE)."""
    rows = []
    for name, block in systems.items():
        if "length" not in block:
            continue
        length = block["length"]
        chair = block.get("hallucination_rate", {})
        rows.append(
            {
                "system": name,
                "words": f"{fmt(length['mean_words'])} ({fmt(length['median_words'])})",
                "chair_i": format_interval(chair.get("CHAIR-i")),
                "chair_s": format_interval(chair.get("CHAIR-s")),
                "scene_graph": format_interval(block.get("scene_graph_f1")),
            }
        )
    return rows


def describe_shorter_gain(metrics: dict[str, Any]) -> str | None:
    """The sentence for a fine-tuned metric gain that comes with clearly shorter captions."""
    lengths = next(
        (r for r in metrics.get("length_comparisons", []) if (r["a"], r["b"]) == PAIR), None
    )
    if lengths is None or lengths["ci_high"] is None or lengths["ci_high"] >= 0:
        return None
    gains = [
        c["metric"]
        for c in metrics.get("comparisons", [])
        if (c["a"], c["b"]) == PAIR and c["metric"] in COCO_GAIN_METRICS and (c["ci_low"] or 0) > 0
    ]
    if not gains:
        return None
    base, tuned = (metrics["systems"][n]["length"]["mean_words"] for n in PAIR)
    return (
        f"The fine-tuned model's gain on {', '.join(gains)} comes with shorter captions: "
        f"{fmt(tuned)} words on average against {fmt(base)} for the base model (difference "
        f"{fmt(lengths['diff_words'])}, 95% CI {fmt(lengths['ci_low'])} to {fmt(lengths['ci_high'])}). "
        "A shorter caption can score higher on reference-based metrics while telling a blind reader "
        "less; weigh it against the study's usefulness ratings."
    )


def describe_length_adjusted(metrics: dict[str, Any]) -> list[str]:
    """Fine-tuned vs base differences that caption length alone explains (COCO metrics)."""
    sentences = []
    for r in metrics.get("length_adjusted", []):
        if (r["a"], r["b"]) == PAIR and r.get("explained_by_length") and r["metric"] in COCO_GAIN_METRICS:
            sentences.append(
                f"The {r['metric']} change ({fmt(r['raw_diff'])}, 95% CI {fmt(r['raw_ci_low'])} to "
                f"{fmt(r['raw_ci_high'])}) is explained by caption length alone: at equal length it is "
                f"{fmt(r['adjusted_diff'])} (95% CI {fmt(r['adjusted_ci_low'])} to "
                f"{fmt(r['adjusted_ci_high'])})."
            )
    return sentences


def describe_scene_graph(systems: dict[str, Any]) -> str:
    """The scene-graph F1 is not SPICE; its agreement with SPICE is unknown unless measured here."""
    measured = [
        (name, block["scene_graph_f1"]["agreement_with_spice"])
        for name, block in systems.items()
        if "kendall_tau" in block.get("scene_graph_f1", {}).get("agreement_with_spice", {})
    ]
    text = "Scene-graph F1 is an offline SPICE-like tuple F1 from a spaCy parse, not SPICE; "
    if not measured:
        return text + "how closely it agrees with SPICE is unknown."
    shown = "; ".join(
        f"{name} Kendall tau {fmt(a['kendall_tau'])} over {a['n_images']} images" for name, a in measured
    )
    return text + f"its per-image agreement with SPICE on these captions: {shown}."


def describe_metric_context(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """Statement, table rows and sentences for the memo's automatic-metrics section.

    Args:
        metrics: metrics.json content, or None when none was given.

    Returns:
        {"statement": str, "rows": [...], "sentences": [...]}; rows are empty and a sentence says so
        when metrics.json predates length, hallucination and scene-graph figures.
    """
    if not metrics:
        return {"statement": SECONDARY_STATEMENT, "rows": [], "sentences": []}
    rows = build_context_rows(metrics.get("systems", {}))
    sentences = []
    if not rows:
        sentences.append(
            "This metrics.json has no caption-length, hallucination-rate or scene-graph figures "
            "(written by an older `altcap evaluate`); rerun `altcap evaluate` to add them."
        )
    shorter = describe_shorter_gain(metrics)
    if shorter:
        sentences.append(shorter)
    sentences += describe_length_adjusted(metrics)
    if any(r["scene_graph"] != "-" for r in rows):
        sentences.append(describe_scene_graph(metrics.get("systems", {})))
    return {"statement": SECONDARY_STATEMENT, "rows": rows, "sentences": sentences}
