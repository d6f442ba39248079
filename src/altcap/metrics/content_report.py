"""metrics.md sections beyond the COCO tables: caption length, length-adjusted differences, object
hallucination rate and the offline scene-graph F1 (not SPICE)."""

from __future__ import annotations

from typing import Any

EXTRA_LABELS = {
    "CHAIR-i": "CHAIR-i",
    "CHAIR-s": "CHAIR-s",
    "scene_graph_f1": "scene-graph F1 (not SPICE)",
}
LENGTH_COLUMNS = ("mean_words", "median_words", "q1_words", "q3_words", "min_words", "max_words")


def format_ci(value: Any, low: Any, high: Any) -> str:
    """'0.612 [0.580, 0.640]', '0.612' without a CI, '-' when absent."""
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def render_length(metrics: dict[str, Any]) -> list[str]:
    """Word-count distribution per system, and the paired length differences."""
    systems = metrics["systems"]
    names = [n for n in systems if "length" in systems[n]]
    if not names:
        return []
    lines = ["", "## Caption length (words)", "", "| system | " + " | ".join(LENGTH_COLUMNS) + " |"]
    lines.append("|" + "---|" * (len(LENGTH_COLUMNS) + 1))
    for name in names:
        stats = systems[name]["length"]
        cells = [f"{stats[c]:.1f}" if isinstance(stats[c], float) else str(stats[c]) for c in LENGTH_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for row in metrics.get("length_comparisons", []):
        lines.append(
            f"\n{row['b']} - {row['a']}: {format_ci(row['diff_words'], row['ci_low'], row['ci_high'])} "
            f"words per caption (paired bootstrap, p = {row['p_value']:.4f})."
        )
    return lines


def render_length_adjusted(metrics: dict[str, Any]) -> list[str]:
    """Raw vs length-adjusted difference per pair and metric, then the 'length alone' sentences."""
    records = metrics.get("length_adjusted", [])
    if not records:
        return []
    lines = [
        "",
        "## Differences with caption length held fixed",
        "",
        "Per-image score difference regressed on the word-count difference; adjusted = the difference "
        "at equal length. BLEU-4 and METEOR as sentence scores; CHAIR-s and embedding_distance: lower "
        "is better.",
        "",
        "| pair | metric | raw diff [CI] | length-adjusted diff [CI] | score per extra word |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        slope = "-" if r["slope_per_word"] is None else f"{r['slope_per_word']:.4f}"
        lines.append(
            f"| {r['b']} - {r['a']} | {r['metric']} | "
            f"{format_ci(r['raw_diff'], r['raw_ci_low'], r['raw_ci_high'])} | "
            f"{format_ci(r['adjusted_diff'], r['adjusted_ci_low'], r['adjusted_ci_high'])} | {slope} |"
        )
    notes = [r["note"] for r in records if r.get("note")]
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return lines


def render_hallucination_and_scene_graph(metrics: dict[str, Any]) -> list[str]:
    """CHAIR-i / CHAIR-s and the scene-graph F1 (labelled not SPICE) per system."""
    systems = metrics["systems"]
    lines: list[str] = []
    with_chair = [n for n in systems if "hallucination_rate" in systems[n]]
    if with_chair:
        lines += [
            "",
            "## Object hallucination rate (CHAIR-style, against the references; lower is better)",
            "",
            "| system | CHAIR-i (per mention) | CHAIR-s (per caption) | hallucinated / object mentions |",
            "|---|---|---|---|",
        ]
        for name in with_chair:
            h = systems[name]["hallucination_rate"]
            i, s = h["CHAIR-i"], h["CHAIR-s"]
            lines.append(
                f"| {name} | {format_ci(i['value'], i['ci_low'], i['ci_high'])} | "
                f"{format_ci(s['value'], s['ci_low'], s['ci_high'])} | "
                f"{h['hallucinated_mentions']} / {h['object_mentions']} |"
            )
    with_graph = [n for n in systems if "scene_graph_f1" in systems[n]]
    if with_graph:
        label = systems[with_graph[0]]["scene_graph_f1"]["label"]
        lines += ["", "## Scene-graph F1 (not SPICE)", "", f"{label}.", ""]
        lines += ["| system | scene-graph F1, not SPICE [CI] | agreement with SPICE |", "|---|---|---|"]
        for name in with_graph:
            g = systems[name]["scene_graph_f1"]
            agreement = g["agreement_with_spice"]
            shown = (
                f"Kendall tau {agreement['kendall_tau']:.3f} ({agreement['n_images']} images)"
                if "kendall_tau" in agreement
                else agreement["status"]
            )
            lines.append(f"| {name} | {format_ci(g['value'], g['ci_low'], g['ci_high'])} | {shown} |")
    return lines


def render_extra_comparisons(metrics: dict[str, Any]) -> list[str]:
    """Paired bootstrap differences of CHAIR-i, CHAIR-s and the scene-graph F1 (not SPICE)."""
    rows = [c for c in metrics.get("comparisons", []) if c["metric"] in EXTRA_LABELS]
    if not rows:
        return []
    lines = ["", "Paired differences (b - a, paired bootstrap):", ""]
    for c in rows:
        lines.append(
            f"- {EXTRA_LABELS[c['metric']]}, {c['b']} - {c['a']}: "
            f"{format_ci(c['diff'], c['ci_low'], c['ci_high'])}, p = {c['p_value']:.4f}"
        )
    return lines


def render_content_markdown(metrics: dict[str, Any]) -> list[str]:
    """Every section above, in order (empty for metrics.json files written before they existed)."""
    return (
        render_length(metrics)
        + render_length_adjusted(metrics)
        + render_hallucination_and_scene_graph(metrics)
        + render_extra_comparisons(metrics)
    )
