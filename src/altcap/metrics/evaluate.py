"""`run_evaluate`: score every system against the references, bootstrap CIs, paired comparisons.

Order: read and check inputs -> PTB-tokenise everything in one Java call -> COCO metrics per
reference mode (multi, single) and system -> FGD -> one shared resampling of images for every CI
and comparison -> write metrics.json, per_image.jsonl, metrics.md and the bar chart.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np

from altcap.cli_output import StageBar, stage_progress
from altcap.metrics.accessibility import count_words, summarise_accessibility
from altcap.metrics.bootstrap import (
    MeanStatistic,
    Statistic,
    compare_paired,
    compute_percentile_ci,
    draw_weights,
)
from altcap.metrics.coco import find_spice_problem, score_coco, tokenize_captions
from altcap.metrics.config import EvaluateConfig
from altcap.metrics.fgd import FgdStatistic, embed_sentences, load_encoder
from altcap.metrics.hallucination import (
    ObjectVocabulary,
    ObjectVocabularyError,
    load_object_vocabulary,
    score_hallucination,
)
from altcap.metrics.inputs import load_inputs
from altcap.metrics.length import adjust_all_pairs, compare_lengths, summarise_length
from altcap.metrics.outputs import Scored, write_outputs
from altcap.metrics.quality_split import split_by_quality_flag

log = logging.getLogger(__name__)
METRIC_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE", "FGD")
MODES = ("multi", "single")
# Multi-reference only, reported outside the COCO `corpus` block: lower CHAIR is better.
EXTRA_METRICS = ("CHAIR-i", "CHAIR-s", "scene_graph_f1")
# Metrics whose per-image scores enter the length-adjusted comparison (BLEU-4 and METEOR as sentence
# scores: their corpus values are not per-image means).
LENGTH_ADJUSTED_METRICS = (
    "BLEU-4",
    "METEOR",
    "ROUGE-L",
    "CIDEr-D",
    "SPICE",
    "scene_graph_f1",
    "CHAIR-s",
    "embedding_distance",
)


def select_references(references: list[list[str]], mode: str) -> list[list[str]]:
    """All references (multi) or only the first of each image (single)."""
    return references if mode == "multi" else [refs[:1] for refs in references]


def score_coco_all(cfg: EvaluateConfig, scored: Scored, progress: StageBar) -> None:
    """COCO metrics for every mode and system (one tokeniser call, one METEOR JVM)."""
    from pycocoevalcap.meteor.meteor import Meteor

    inputs = scored.inputs
    spice_problem = find_spice_problem() if cfg.spice else "disabled by config (spice: false)"
    if spice_problem:
        scored.missing["SPICE"] = spice_problem
        log.warning("SPICE not computed: %s", spice_problem)
    groups = [inputs.references] + [[[c] for c in s.captions] for s in inputs.systems]
    refs_tok, *preds_tok = tokenize_captions(groups)
    meteor = Meteor()
    modes = MODES if cfg.single_ref else MODES[:1]
    task = progress.add_task("COCO metrics", total=len(modes) * len(inputs.systems))
    for mode in modes:
        scored.results[mode] = {}
        for system, tokens in zip(inputs.systems, preds_tok, strict=True):
            predictions = [t[0] for t in tokens]
            result, problem = score_coco(
                select_references(refs_tok, mode), predictions, meteor, spice=spice_problem is None
            )
            if problem:
                scored.missing["SPICE"] = problem
            scored.results[mode][system.name] = result
            progress.advance(task)


EMBEDDING_DISTANCE = "embedding_distance"


def compute_caption_distances(pred: np.ndarray, refs: np.ndarray, ref_image: np.ndarray) -> np.ndarray:
    """Per image, cosine distance between the caption's embedding and its references' mean embedding.

    FGD compares whole distributions and has no per-image value; metric validity (issue #14) needs a
    per-image embedding score, and this is its closest per-image counterpart (lower is better).
    """
    sums = np.zeros_like(pred)
    np.add.at(sums, ref_image, refs)
    centroid = sums / np.bincount(ref_image, minlength=len(pred))[:, None]
    cosine = (pred * centroid).sum(1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(centroid, axis=1))
    return 1.0 - cosine


def score_fgd_all(cfg: EvaluateConfig, scored: Scored, progress: StageBar) -> None:
    """Embed references once and each system's captions, then FGD per mode and system."""
    inputs = scored.inputs
    if not cfg.fgd:
        scored.missing["FGD"] = "disabled by config (fgd: false)"
        return
    if len(inputs.images) < 2:
        scored.missing["FGD"] = "needs at least 2 images (a covariance of one embedding is undefined)"
        return
    task = progress.add_task("FGD embeddings", total=1 + len(inputs.systems))
    encoder = load_encoder(cfg.embedding_model)
    flat_refs = [c for refs in inputs.references for c in refs]
    ref_image = np.repeat(np.arange(len(inputs.references)), [len(r) for r in inputs.references])
    first_ref = np.concatenate([[0], np.cumsum([len(r) for r in inputs.references])[:-1]])
    ref_vectors = embed_sentences(encoder, flat_refs, cfg.embedding_batch_size)
    progress.advance(task)
    for system in inputs.systems:
        pred_vectors = embed_sentences(encoder, system.captions, cfg.embedding_batch_size)
        scored.results["multi"][system.name].per_image[EMBEDDING_DISTANCE] = compute_caption_distances(
            pred_vectors, ref_vectors, ref_image
        )
        for mode, results in scored.results.items():
            keep = slice(None) if mode == "multi" else first_ref
            statistic = FgdStatistic(pred_vectors, ref_vectors[keep], ref_image[keep])
            results[system.name].corpus["FGD"] = statistic.value()
            results[system.name].statistics["FGD"] = statistic
        progress.advance(task)


def load_vocabulary(cfg: EvaluateConfig) -> ObjectVocabulary | None:
    """The object vocabulary of the hallucination rate (None when disabled), read before any scoring
    so a bad `object_synonyms` file fails in a second, not after minutes of COCO metrics."""
    from altcap.metrics.inputs import EvaluateInputError

    if not cfg.hallucination:
        return None
    try:
        return load_object_vocabulary(cfg.object_synonyms)
    except ObjectVocabularyError as err:
        raise EvaluateInputError([f"object_synonyms: {err}"]) from err


def score_hallucination_all(scored: Scored, vocabulary: ObjectVocabulary | None) -> None:
    """CHAIR-i / CHAIR-s of every system against the references (multi-reference only)."""
    if vocabulary is None:
        scored.missing["hallucination_rate"] = "disabled by config (hallucination: false)"
        return
    for system in scored.inputs.systems:
        scores = score_hallucination(system.captions, scored.inputs.references, vocabulary)
        result = scored.results["multi"][system.name]
        result.corpus.update(scores.corpus())
        result.statistics.update(scores.statistics())
        result.per_image["CHAIR-s"] = (scores.hallucinated > 0).astype(float)
        result.per_image["object_mentions"] = scores.mentions
        result.per_image["hallucinated_mentions"] = scores.hallucinated
        objects = np.empty(len(scores.objects), dtype=object)  # ragged lists: fill one by one
        for i, names in enumerate(scores.objects):
            objects[i] = names
        result.per_image["hallucinated_objects"] = objects


def score_scene_graph_all(cfg: EvaluateConfig, scored: Scored, progress: StageBar) -> None:
    """Offline scene-graph F1 (not SPICE) of every system; recorded as missing when spaCy is absent."""
    from altcap.metrics.scene_graph import SceneGraphExtractor, find_scene_graph_problem, score_scene_graph

    problem = "disabled by config (scene_graph: false)" if not cfg.scene_graph else None
    problem = problem or find_scene_graph_problem(cfg.scene_graph_model)
    if problem:
        scored.missing["scene_graph_f1"] = problem
        log.warning("scene-graph F1 not computed: %s", problem)
        return
    task = progress.add_task("scene-graph F1 (spaCy parse)", total=1 + len(scored.inputs.systems))
    extractor = SceneGraphExtractor(cfg.scene_graph_model)
    references = extractor.extract_references(scored.inputs.references)
    progress.advance(task)
    for system in scored.inputs.systems:
        per_image = score_scene_graph(extractor.extract(system.captions), references)
        result = scored.results["multi"][system.name]
        defined = np.isfinite(per_image).any()
        result.corpus["scene_graph_f1"] = float(np.nanmean(per_image)) if defined else float("nan")
        result.per_image["scene_graph_f1"] = per_image
        result.statistics["scene_graph_f1"] = MeanStatistic(per_image)
        progress.advance(task)


def bootstrap_all(cfg: EvaluateConfig, scored: Scored, progress: StageBar) -> None:
    """Replicates of every (mode, system, metric) on one shared resampling of the images."""
    weights = draw_weights(len(scored.inputs.images), cfg.bootstrap_samples, cfg.seed)
    jobs = [
        (mode, name, metric, statistic)
        for mode, results in scored.results.items()
        for name, result in results.items()
        for metric, statistic in result.statistics.items()
    ]
    task = progress.add_task("bootstrap", total=len(jobs))
    for mode, name, metric, statistic in jobs:
        rows = weights[: cfg.fgd_bootstrap_samples] if metric == "FGD" else weights
        if len(rows):
            scored.replicates[(mode, name, metric)] = replicate_statistic(statistic, rows)
        progress.advance(task)


def replicate_statistic(statistic: Statistic, weights: np.ndarray) -> np.ndarray:
    """Replicates of one statistic (a seam for tests and timing)."""
    return statistic.replicate(weights)


def summarise_mode(cfg: EvaluateConfig, scored: Scored, mode: str, name: str) -> dict[str, Any]:
    """{metric: {value, ci_low, ci_high}} for one system and reference mode."""
    corpus = scored.results[mode][name].corpus
    summary = {}
    for metric in METRIC_ORDER:
        if metric not in corpus:
            continue
        replicates = scored.replicates.get((mode, name, metric))
        if replicates is not None and metric == "FGD":
            # Resamples repeat images, which inflates FGD (like FID's small-sample bias); centre the
            # replicates on the reported value so the CI shows its spread, not that bias.
            replicates = replicates - (np.nanmean(replicates) - corpus[metric])
        low, high = (None, None) if replicates is None else compute_percentile_ci(replicates, cfg.ci_level)
        summary[metric] = {"value": corpus[metric], "ci_low": low, "ci_high": high}
    return summary


def compare_systems(cfg: EvaluateConfig, scored: Scored) -> list[dict[str, Any]]:
    """Paired bootstrap of b - a for every pair of systems and every multi-reference metric."""
    comparisons = []
    names = [s.name for s in scored.inputs.systems]
    results = scored.results["multi"]
    for a, b in itertools.combinations(names, 2):
        for metric in (*METRIC_ORDER, *EXTRA_METRICS):
            rep_a, rep_b = (scored.replicates.get(("multi", n, metric)) for n in (a, b))
            if rep_a is None or rep_b is None or np.isnan(rep_b - rep_a).all():
                continue  # all-NaN: e.g. CHAIR-i of a system whose captions name no object
            paired = compare_paired(
                results[a].corpus[metric], results[b].corpus[metric], rep_a, rep_b, cfg.ci_level
            )
            comparisons.append(
                {
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "diff": paired.diff,
                    "ci_low": paired.ci_low,
                    "ci_high": paired.ci_high,
                    "p_value": paired.p_value,
                    "test": f"paired bootstrap (n={len(rep_a)})",
                }
            )
    return comparisons


def summarise_extra(cfg: EvaluateConfig, scored: Scored, name: str, metric: str) -> dict[str, Any]:
    """{value, ci_low, ci_high} of one multi-reference metric outside the COCO block."""
    replicates = scored.replicates.get(("multi", name, metric))
    defined = replicates is not None and not np.isnan(replicates).all()
    low, high = compute_percentile_ci(replicates, cfg.ci_level) if defined else (None, None)
    return {"value": scored.results["multi"][name].corpus[metric], "ci_low": low, "ci_high": high}


def summarise_content_metrics(cfg: EvaluateConfig, scored: Scored, name: str) -> dict[str, Any]:
    """`hallucination_rate` and `scene_graph_f1` blocks of one system (those computed)."""
    from altcap.metrics.scene_graph import SCENE_GRAPH_LABEL, describe_spice_agreement

    result = scored.results["multi"][name]
    out: dict[str, Any] = {}
    if "CHAIR-i" in result.corpus:
        mentions = result.per_image["object_mentions"]
        hallucinated = result.per_image["hallucinated_mentions"]
        out["hallucination_rate"] = {
            "CHAIR-i": summarise_extra(cfg, scored, name, "CHAIR-i"),
            "CHAIR-s": summarise_extra(cfg, scored, name, "CHAIR-s"),
            "object_mentions": int(mentions.sum()),
            "hallucinated_mentions": int(hallucinated.sum()),
            "captions_with_hallucination": int((hallucinated > 0).sum()),
        }
    if "scene_graph_f1" in result.corpus:
        out["scene_graph_f1"] = {
            "label": SCENE_GRAPH_LABEL,
            **summarise_extra(cfg, scored, name, "scene_graph_f1"),
            "agreement_with_spice": describe_spice_agreement(
                result.per_image["scene_graph_f1"], result.per_image.get("SPICE")
            ),
        }
    return out


def compare_length_adjusted(cfg: EvaluateConfig, scored: Scored) -> dict[str, Any]:
    """`length_comparisons` (paired word-count differences) and `length_adjusted` (per pair, per metric)."""
    weights = draw_weights(len(scored.inputs.images), cfg.bootstrap_samples, cfg.seed)  # = bootstrap_all's
    names = [s.name for s in scored.inputs.systems]
    lengths = {s.name: np.array([count_words(c) for c in s.captions], float) for s in scored.inputs.systems}
    per_image = {
        n: {m: v for m, v in scored.results["multi"][n].per_image.items() if m in LENGTH_ADJUSTED_METRICS}
        for n in names
    }
    return {
        "length_comparisons": compare_lengths(names, lengths, weights, cfg.ci_level),
        "length_adjusted": adjust_all_pairs(
            per_image, lengths, list(LENGTH_ADJUSTED_METRICS), weights, cfg.ci_level
        ),
    }


def build_systems_block(cfg: EvaluateConfig, scored: Scored) -> dict[str, Any]:
    """The `systems` block of metrics.json."""
    systems = {}
    for system in scored.inputs.systems:
        block: dict[str, Any] = {
            "pred": str(system.pred_path),
            "corpus": summarise_mode(cfg, scored, "multi", system.name),
        }
        if "single" in scored.results:
            block["single_ref"] = summarise_mode(cfg, scored, "single", system.name)
        block["accessibility"] = summarise_accessibility(system.captions, scored.inputs.metadata)
        block["length"] = summarise_length(system.captions)
        block.update(summarise_content_metrics(cfg, scored, system.name))
        systems[system.name] = block
    return systems


def run_evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Evaluate one or more captions files against a manifest's references.

    Args:
        cfg: resolved config (refs, pred, out, ...).

    Returns:
        The metrics.json content (also written to `cfg.out` with per_image.jsonl, metrics.md and
        metrics_bar.png/.svg).

    Raises:
        EvaluateInputError: for missing/duplicate images, unreadable files or a missing --out.
    """
    from altcap.metrics.inputs import EvaluateInputError

    if cfg.out is None:
        raise EvaluateInputError(["--out is required: the folder for metrics.json and friends"])
    scored = Scored(inputs=load_inputs(cfg))
    vocabulary = load_vocabulary(cfg)
    with stage_progress("evaluate") as progress:
        score_coco_all(cfg, scored, progress)
        score_fgd_all(cfg, scored, progress)
        score_hallucination_all(scored, vocabulary)
        score_scene_graph_all(cfg, scored, progress)
        bootstrap_all(cfg, scored, progress)
    if cfg.fgd and cfg.fgd_bootstrap_samples == 0:
        scored.missing["FGD CI"] = "fgd_bootstrap_samples is 0, so FGD has no CI or paired test"
    metrics = {
        "refs": str(cfg.refs),
        "split": cfg.split,
        "n_images": len(scored.inputs.images),
        "reference_mode": "multi",
        "missing": scored.missing,
        "systems": build_systems_block(cfg, scored),
        "comparisons": compare_systems(cfg, scored),
        **compare_length_adjusted(cfg, scored),
        "by_quality_flag": split_by_quality_flag(
            scored.inputs.metadata,
            {name: result.per_image for name, result in scored.results["multi"].items()},
            cfg.bootstrap_samples,
            cfg.ci_level,
            cfg.seed,
        ),
        "warnings": scored.inputs.warnings,
        "dropped_images": scored.inputs.dropped,
    }
    write_outputs(cfg, metrics, scored)
    return metrics
