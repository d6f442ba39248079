"""chat_ties: where two runs' greedy ids part, and the logit gap there on HF's model."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import chat_ties


def test_first_difference_is_the_parting_step_or_the_shorter_length() -> None:
    assert chat_ties.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert chat_ties.first_difference([1, 2], [1, 2, 3]) == 2
    assert chat_ties.first_difference([], [4]) == 0


def test_summary_counts_rows_within_four_bf16_ulps() -> None:
    rows = [{"gap": 0.01, "gap_in_bf16_ulps": 1.5}, {"gap": -0.5, "gap_in_bf16_ulps": 60.0}]
    summary = chat_ties.summarize(rows, [0.2, 0.4, 0.6])
    assert summary["rows_examined"] == 2 and summary["rows_within_4_bf16_ulps"] == 1
    assert summary["parting_gap_max"] == 0.5 and summary["agreed_top2_gap_median"] == 0.4
    assert chat_ties.summarize([], []) == {"rows_examined": 0}


@pytest.mark.slow
def test_a_token_hf_would_not_choose_parts_with_a_positive_gap(tmp_path: Path) -> None:
    from benchmarks.chat_bench import ensure_model
    from benchmarks.chat_data import write_random_images
    from benchmarks.chat_hf import caption_hf, load_hf_model, load_hf_processor

    folder, _ = ensure_model("qwen2.5-vl-3b-instruct", tmp_path / "model", tiny=True)
    paths = write_random_images(tmp_path / "images", 2, (112, 112))
    model = load_hf_model(folder)
    processor, _ = load_hf_processor(folder, 112 * 112)
    hf_ids = caption_hf(model, processor, paths, 2, 6)["ids"]
    other = [list(row) for row in hf_ids]
    other[1][2] = (other[1][2] + 1) % 100  # a token greedy decoding did not pick
    result = chat_ties.explain_differences(model, processor, paths, hf_ids, other)
    assert result["rows_examined"] == 1 and result["rows"][0]["step"] == 2
    # Teacher-forced on the same fp32 weights, HF's own token scores higher than the swapped one.
    assert result["rows"][0]["gap"] > 0 and result["agreed_steps"] == 2
