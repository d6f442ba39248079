"""Ratings by context and by photo-quality flag: planted per-stratum gains are recovered."""

import numpy as np
import pandas as pd
import pytest

from altcap.analysis.markdown import render_strata
from altcap.analysis.strata import MIN_PAIRS_FOR_CI, NO_CONTEXT, NO_FLAGS, analyze_strata
from altcap.report.memo import describe_strata

# image -> (context, quality flags, planted gain of the fine-tuned system)
IMAGES = {
    "a.png": ("news article", "", 2.0),
    "b.png": ("news article", "", 2.0),
    "c.png": ("shopping listing", "blurry", -1.0),
    "d.png": ("shopping listing", "blurry;underexposed", -1.0),
    "e.png": ("", "", 0.0),
    "f.png": ("", "", 0.0),
}


def make_responses(n_participants: int = 8, only: set[str] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(n_participants):
        for image, (context, flags, gain) in IMAGES.items():
            if only is not None and image not in only:
                continue
            for system, shift in (("base", 0.0), ("finetuned", gain)):
                value = int(np.clip(round(4 + shift + rng.normal(0, 0.3)), 1, 7))
                rows.append({
                    "participant_id": f"P{p:03d}", "trial_kind": "rating", "image": image,
                    "item": "usefulness", "system": system, "position": "1" if system == "base" else "2",
                    "value": str(value), "context": context, "quality_flags": flags,
                })  # fmt: skip
    return pd.DataFrame(rows)


def test_context_strata_recover_planted_gains() -> None:
    block = analyze_strata(make_responses(), "usefulness", "context", n_boot=300, seed=0)
    groups = block["groups"]
    assert list(groups) == ["news article", "shopping listing", NO_CONTEXT]
    assert groups["news article"]["mean_gain"] == pytest.approx(2.0, abs=0.3)
    assert groups["news article"]["mean_gain_ci_low"] > 1.0
    assert groups["shopping listing"]["mean_gain_ci_high"] < 0
    assert groups[NO_CONTEXT]["mean_gain_ci_low"] < 0.5 and groups[NO_CONTEXT]["n_images"] == 2
    assert groups["news article"]["systems"]["base"]["n"] == 16


def test_quality_flags_split_counts_an_image_in_each_of_its_flags() -> None:
    block = analyze_strata(make_responses(), "usefulness", "quality_flags", n_boot=300, seed=0)
    groups = block["groups"]
    assert list(groups) == ["blurry", "underexposed", NO_FLAGS]
    assert groups["blurry"]["n_images"] == 2 and groups["underexposed"]["n_images"] == 1
    assert groups["blurry"]["mean_gain_ci_high"] < 0  # the planted drop on blurry photos
    assert groups[NO_FLAGS]["mean_gain"] > 0.5


def test_small_groups_get_no_ci_and_absent_columns_no_split() -> None:
    few = make_responses(n_participants=MIN_PAIRS_FOR_CI - 1)
    block = analyze_strata(few, "usefulness", "context", n_boot=200, seed=0)
    assert block["groups"]["news article"]["n_pairs"] == MIN_PAIRS_FOR_CI - 1
    assert block["groups"]["news article"]["mean_gain_ci_low"] is None
    assert "(no CI: n < minimum)" in "\n".join(render_strata(block, "By context"))
    no_context = make_responses(only={"e.png", "f.png"})
    assert analyze_strata(no_context, "usefulness", "context", 200, 0) is None
    assert analyze_strata(no_context.drop(columns=["context"]), "usefulness", "context", 200, 0) is None


def test_tables_escape_user_text_and_the_memo_shows_them_only_when_present() -> None:
    responses = make_responses()
    responses.loc[responses["image"] == "a.png", "context"] = "<b>news</b> | pipe"
    block = analyze_strata(responses, "usefulness", "context", n_boot=200, seed=0)
    text = "\n".join(render_strata(block, "By context", level=3))
    assert text.startswith("### By context") and "&lt;b&gt;news&lt;/b&gt; \\| pipe" in text
    sections = describe_strata({"by_context": block, "by_quality_flag": None})
    assert len(sections) == 1 and "Usefulness by context (where the image appears)" in sections[0]
    assert describe_strata({"by_context": None}) == []
