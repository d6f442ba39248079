"""Metric validity: Kendall tau of metric gains against human gains, with bootstrap CIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from altcap.analysis.validity import analyze_metric_validity, kendall_with_ci


def planted_per_image(tmp_path: Path, shuffle: bool) -> tuple[pd.DataFrame, Path]:
    rng = np.random.default_rng(0)
    images = [f"im{j}" for j in range(40)]
    gain = np.linspace(-1, 2, 40)
    rows = []
    for pid in range(10):
        for j, image in enumerate(images):
            for system, shift in (("base", 0.0), ("finetuned", gain[j])):
                value = int(np.clip(round(4 + shift + rng.normal(0, 0.5)), 1, 7))
                rows.append(
                    {
                        "participant_id": f"p{pid}",
                        "participant_status": "completed",
                        "trial_index": j,
                        "trial_kind": "rating",
                        "image": image,
                        "system": system,
                        "position": 1,
                        "item": "usefulness",
                        "value": str(value),
                        "correct": "",
                    }
                )
    metric_gain = rng.permutation(gain) if shuffle else gain + rng.normal(0, 0.2, 40)
    per_image = [
        {"system": s, "image": im, "caption": "", "CIDEr-D": float(m if s == "finetuned" else 0.0)}
        for im, m in zip(images, metric_gain, strict=True)
        for s in ("base", "finetuned")
    ]
    (tmp_path / "per_image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in per_image))
    return pd.DataFrame(rows), tmp_path / "metrics.json"


def test_metric_validity_planted_relation_vs_shuffled(tmp_path: Path) -> None:
    responses, metrics = planted_per_image(tmp_path, shuffle=False)
    planted = analyze_metric_validity(responses, metrics, "usefulness", 200, 0)["outcomes"]["usefulness"][
        "CIDEr-D"
    ]
    assert planted["tau"] > 0.5 and planted["ci_low"] > 0.3
    responses, metrics = planted_per_image(tmp_path, shuffle=True)
    shuffled = analyze_metric_validity(responses, metrics, "usefulness", 200, 0)["outcomes"]["usefulness"][
        "CIDEr-D"
    ]
    assert abs(shuffled["tau"]) < 0.25 and shuffled["ci_low"] < 0 < shuffled["ci_high"]


def test_kendall_ci_brackets_estimate() -> None:
    x = np.arange(30, dtype=float)
    result = kendall_with_ci(x, x + np.random.default_rng(1).normal(0, 5, 30), 300, 0)
    assert result["ci_low"] <= result["tau"] <= result["ci_high"]


def test_best_agreement_counts_lower_is_better_metrics_by_their_negated_tau(tmp_path) -> None:
    """Hallucinated objects agree with people when they fall as ratings rise; length is only a baseline."""
    import json

    import numpy as np
    import pandas as pd

    from altcap.analysis import validity

    rng = np.random.default_rng(0)
    n = 40
    human = pd.DataFrame({"usefulness": rng.normal(size=n)}, index=[f"im{i}.jpg" for i in range(n)])
    rows = []
    for i, image in enumerate(human.index):
        gain = human["usefulness"].iloc[i]
        for system, sign in (("base", 0.0), ("finetuned", 1.0)):
            rows.append({
                "system": system, "image": image,
                "hallucinated_mentions": -sign * gain,  # fewer hallucinations where people liked it more
                "length_words": sign * gain * 5,  # perfectly tracks people: still never "best"
                "BLEU-4": sign * rng.normal(),  # unrelated
            })
    (tmp_path / "per_image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    diffs = validity.compute_metric_diffs(validity.read_per_image(tmp_path / "metrics.json"))
    joined = diffs.join(human, how="inner")
    taus = {m: validity.kendall_with_ci(joined[m].to_numpy(), joined["usefulness"].to_numpy(), 50, 0)["tau"]
            for m in diffs.columns}
    assert taus["hallucinated_mentions"] < -0.9 and taus["length_words"] > 0.9
    best = validity.pick_best_metric({m: {"tau": t} for m, t in taus.items()})
    assert best is not None and best[0] == "hallucinated_mentions" and best[1] > 0.9
