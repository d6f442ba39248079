"""End to end: `altcap evaluate` in tmp_path, checking the exact output files."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from altcap.cli import app

OUTPUTS = {"metrics.json", "per_image.jsonl", "metrics.md", "metrics_bar.png", "metrics_bar.svg"}
SCHEMA_METRICS = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "FGD"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    from metrics_fixtures import GOOD, WORSE, write_captions, write_manifest

    root = tmp_path_factory.mktemp("evaluate")
    refs = write_manifest(root / "manifest.jsonl")
    preds = [write_captions(root / "base.jsonl", WORSE), write_captions(root / "ft.jsonl", GOOD)]
    args = [
        "evaluate",
        "--refs",
        str(refs),
        "--pred",
        str(preds[0]),
        "--pred",
        str(preds[1]),
        "--name",
        "base",
        "--name",
        "finetuned",
        "--out",
        str(root / "out"),
        "--set",
        "bootstrap_samples=200",
        "--set",
        "fgd_bootstrap_samples=20",
    ]
    result = CliRunner().invoke(app, args)
    return result, root / "out"


@pytest.mark.slow
def test_cli_writes_exact_files_and_schema(run) -> None:
    result, out = run
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == OUTPUTS
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 6 and metrics["split"] == "test" and metrics["reference_mode"] == "multi"
    assert metrics["provenance"]["manifest_sha256"] and metrics["provenance"]["config"]["seed"] == 0
    assert set(metrics["systems"]) == {"base", "finetuned"}
    finetuned = metrics["systems"]["finetuned"]
    assert set(finetuned["corpus"]) >= SCHEMA_METRICS and set(finetuned["single_ref"]) >= SCHEMA_METRICS
    for entry in finetuned["corpus"].values():
        assert set(entry) == {"value", "ci_low", "ci_high"} and entry["ci_low"] <= entry["ci_high"]
    assert ("SPICE" in metrics["missing"]) != ("SPICE" in finetuned["corpus"])
    assert finetuned["accessibility"]["mentions_text_rate"] == 1.0  # "a stop sign that says STOP"
    assert metrics["systems"]["base"]["accessibility"]["redundant_opener_rate"] == 1.0


@pytest.mark.slow
def test_cli_comparisons_and_per_image(run) -> None:
    _, out = run
    metrics = json.loads((out / "metrics.json").read_text())
    cider = next(c for c in metrics["comparisons"] if c["metric"] == "CIDEr-D")
    assert (cider["a"], cider["b"]) == ("base", "finetuned")
    base, ft = (metrics["systems"][n]["corpus"]["CIDEr-D"]["value"] for n in ("base", "finetuned"))
    assert cider["diff"] == pytest.approx(ft - base) and cider["diff"] > 0
    assert cider["test"] == "paired bootstrap (n=200)" and 0 < cider["p_value"] <= 1
    rows = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert set(rows[0]) == {
        "system",
        "image",
        "caption",
        "BLEU-4",
        "METEOR",
        "ROUGE-L",
        "CIDEr-D",
        "SPICE",
        "embedding_distance",
        "scene_graph_f1",
        "hallucinated_mentions",
        "length_words",
        "hallucinated_objects",
    }
    assert all(r["embedding_distance"] is not None and 0 <= r["embedding_distance"] <= 2 for r in rows)
    table = (out / "metrics.md").read_text()
    assert "| CIDEr-D |" in table and "finetuned - base [CI]" in table


@pytest.mark.slow  # the module fixture runs a whole evaluate with spaCy (~12 s)
def test_cli_length_hallucination_and_scene_graph(run) -> None:
    """Issue #29: length statistics, length-adjusted differences, CHAIR and scene-graph F1 (not SPICE)."""
    _, out = run
    metrics = json.loads((out / "metrics.json").read_text())
    base, finetuned = (metrics["systems"][n] for n in ("base", "finetuned"))
    assert base["length"]["mean_words"] == 5.0 and finetuned["length"]["max_words"] == 8
    (lengths,) = metrics["length_comparisons"]
    assert lengths["diff_words"] == pytest.approx(10 / 6) and lengths["ci_low"] > 0
    adjusted = {r["metric"]: r for r in metrics["length_adjusted"]}
    assert {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "scene_graph_f1", "CHAIR-s"} <= set(adjusted)
    cider = adjusted["CIDEr-D"]
    corpus_diff = next(c["diff"] for c in metrics["comparisons"] if c["metric"] == "CIDEr-D")
    assert cider["raw_diff"] == pytest.approx(corpus_diff)  # CIDEr-D's corpus value is the per-image mean
    assert cider["adjusted_ci_low"] <= cider["adjusted_diff"] <= cider["adjusted_ci_high"]
    # "An image of a thing." names no COCO object; the good captions name 8, none invented
    assert base["hallucination_rate"]["object_mentions"] == 0
    assert base["hallucination_rate"]["CHAIR-i"]["value"] is None
    assert finetuned["hallucination_rate"]["object_mentions"] == 8
    assert finetuned["hallucination_rate"]["CHAIR-s"]["value"] == 0.0
    graph = finetuned["scene_graph_f1"]
    assert "not SPICE" in graph["label"] and graph["agreement_with_spice"]["status"].startswith("unknown")
    assert 0 < graph["ci_low"] <= graph["value"] <= graph["ci_high"] <= 1
    assert base["scene_graph_f1"]["value"] == 0
    graph_diff = next(c for c in metrics["comparisons"] if c["metric"] == "scene_graph_f1")
    assert graph_diff["diff"] == pytest.approx(graph["value"]) and graph_diff["ci_low"] > 0
    table = (out / "metrics.md").read_text()
    for heading in (
        "## Caption length (words)",
        "## Differences with caption length held fixed",
        "## Object hallucination rate",
        "## Scene-graph F1 (not SPICE)",
    ):
        assert heading in table


def test_cli_bad_input_exits_2_naming_images(tmp_path: Path) -> None:
    from metrics_fixtures import GOOD, write_captions, write_manifest

    refs = write_manifest(tmp_path / "manifest.jsonl")
    partial = write_captions(tmp_path / "partial.jsonl", {"img/dog.jpg": "a dog"})
    result = CliRunner().invoke(
        app, ["evaluate", "--refs", str(refs), "--pred", str(partial), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "no caption for 'img/kids.jpg'" in result.output and not (tmp_path / "out").exists()
    synonyms = tmp_path / "synonyms.json"
    synonyms.write_text('{"phrases": {"red panda": "panda"}}')
    good = write_captions(tmp_path / "good.jsonl", GOOD)
    args = ["evaluate", "--refs", str(refs), "--pred", str(good), "--out", str(tmp_path / "out2")]
    result = CliRunner().invoke(app, [*args, "--set", f"object_synonyms={synonyms}"])
    assert result.exit_code == 2 and "synonyms.json: phrases['red panda'] = 'panda'" in result.output
    assert not (tmp_path / "out2").exists()
    bad = CliRunner().invoke(app, ["evaluate", "--set", "bootstrap_samples=-1"])
    assert bad.exit_code == 2 and "bootstrap_samples" in bad.output




@pytest.mark.slow
def test_cli_draws_one_bar_by_default_and_nothing_under_quiet(run, tmp_path: Path) -> None:
    """#27 item 16: one bar with a rate for every phase (COCO, FGD, bootstrap ...); -q: nothing,
    not even SPICE's "not computed" or the Java tokeniser's status line."""
    from metrics_fixtures import WORSE, write_captions, write_manifest

    from cli_bars import assert_one_bar_with_rate, assert_quiet, invoke_quiet

    result, _ = run
    assert_one_bar_with_rate(result.stderr, "evaluate")
    refs, pred = write_manifest(tmp_path / "m.jsonl"), write_captions(tmp_path / "p.jsonl", WORSE)
    args = ["evaluate", "--refs", str(refs), "--pred", str(pred), "--out", str(tmp_path / "out"),
            "--set", "bootstrap_samples=20", "--set", "fgd=false", "--set", "scene_graph=false"]
    quiet = invoke_quiet(app, args)
    assert quiet.exit_code == 0, quiet.output
    assert_quiet(quiet.stdout, quiet.stderr)
