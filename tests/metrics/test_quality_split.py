"""Metrics split by photo-quality flag: planted low scores on blurry photos are found."""

import json
from pathlib import Path

import numpy as np
import pytest

from altcap.metrics.quality_split import (
    MIN_IMAGES_FOR_CI,
    NO_FLAGS,
    group_images_by_flag,
    render_quality_markdown,
    split_by_quality_flag,
)


def _planted(n: int = 40, n_blurry: int = 16) -> tuple[list[dict], dict]:
    """System b scores ~0.1 CIDEr-D on blurry photos and ~1.0 elsewhere; a scores ~1.0 everywhere."""
    rng = np.random.default_rng(0)
    flags = [["blurry"] if i < n_blurry else [] for i in range(n)]
    flags[n_blurry] = ["underexposed"]  # a group of one: n, no CI
    metadata = [{"quality_flags": f} for f in flags]
    blurry = np.array([bool(f) and f[0] == "blurry" for f in flags])
    a = 1.0 + rng.normal(0, 0.05, n)
    b = np.where(blurry, 0.1, 1.0) + rng.normal(0, 0.05, n)
    mentions = np.ones(n)
    per_image = {
        "a": {"CIDEr-D": a, "object_mentions": mentions, "hallucinated_mentions": np.zeros(n)},
        "b": {"CIDEr-D": b, "object_mentions": mentions, "hallucinated_mentions": blurry.astype(float)},
    }
    return metadata, per_image


def test_blurry_group_shows_the_planted_drop_and_small_groups_get_no_ci() -> None:
    metadata, per_image = _planted()
    block = split_by_quality_flag(metadata, per_image, bootstrap_samples=300, level=0.95, seed=0)
    groups = block["groups"]
    assert list(groups) == ["blurry", "underexposed", NO_FLAGS]
    assert [groups[g]["n_images"] for g in groups] == [16, 1, 23]
    blurry_b = groups["blurry"]["systems"]["b"]["CIDEr-D"]
    assert blurry_b["value"] == pytest.approx(0.1, abs=0.05) and blurry_b["ci_high"] < 0.2
    clean_b = groups[NO_FLAGS]["systems"]["b"]["CIDEr-D"]
    assert clean_b["value"] == pytest.approx(1.0, abs=0.05)
    diff = {(d["metric"]): d for d in groups["blurry"]["differences"]}["CIDEr-D"]
    assert diff["ci_high"] < -0.8  # b - a on blurry photos: clearly worse
    clean_diff = groups[NO_FLAGS]["differences"][0]
    assert clean_diff["ci_low"] < 0 < clean_diff["ci_high"]  # no difference elsewhere
    assert groups["blurry"]["systems"]["b"]["CHAIR-i"]["value"] == 1.0
    small = groups["underexposed"]
    assert small["ci"] is False and small["systems"]["a"]["CIDEr-D"]["ci_low"] is None
    assert small["n_images"] < MIN_IMAGES_FOR_CI
    text = "\n".join(render_quality_markdown(block))
    assert "## By photo quality flag" in text and "| blurry | 16 | b | 0.1" in text


def test_no_quality_flags_means_no_split() -> None:
    assert group_images_by_flag([{}, {"ocr_text": "x"}]) is None
    assert split_by_quality_flag([{}], {"a": {"CIDEr-D": np.ones(1)}}, 100, 0.95, 0) is None
    assert render_quality_markdown(None) == []


@pytest.mark.slow  # a whole evaluate (Java tokeniser and METEOR)
def test_evaluate_writes_by_quality_flag_from_the_manifest(tmp_path: Path) -> None:
    from metrics_fixtures import CAPTIONS, GOOD, write_captions, write_jsonl

    from altcap.metrics.config import EvaluateConfig
    from altcap.metrics.evaluate import run_evaluate

    blurry = {"img/dog.jpg", "img/kids.jpg"}
    flags = {i: ["blurry"] if i in blurry else [] for i in CAPTIONS}
    rows = [
        {"image": i, "captions": c, "split": "test", "metadata": {"quality_flags": flags[i]}}
        for i, c in CAPTIONS.items()
    ]
    refs = write_jsonl(tmp_path / "m.jsonl", rows)
    tuned = {i: ("A bowl of soup." if i in blurry else c) for i, c in GOOD.items()}
    preds = [write_captions(tmp_path / "base.jsonl", GOOD), write_captions(tmp_path / "ft.jsonl", tuned)]
    cfg = EvaluateConfig(
        refs=refs, pred=preds, name=["base", "tuned"], out=tmp_path / "out", fgd=False, scene_graph=False,
        spice=False, bootstrap_samples=100,
    )  # fmt: skip
    run_evaluate(cfg)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    groups = metrics["by_quality_flag"]["groups"]
    assert {g: groups[g]["n_images"] for g in groups} == {"blurry": 2, NO_FLAGS: 4}
    tuned_blurry = groups["blurry"]["systems"]["tuned"]["CIDEr-D"]["value"]
    assert tuned_blurry < groups["blurry"]["systems"]["base"]["CIDEr-D"]["value"]
    assert groups["blurry"]["systems"]["tuned"]["CIDEr-D"]["ci_low"] is None  # 2 images: no CI
    assert "by_quality_flag" in metrics["notes"]
    assert "## By photo quality flag" in (tmp_path / "out" / "metrics.md").read_text()
    rows = [json.loads(line) for line in (tmp_path / "out" / "per_image.jsonl").read_text().splitlines()]
    assert {r["image"]: r["quality_flags"] for r in rows}["img/dog.jpg"] == ["blurry"]
