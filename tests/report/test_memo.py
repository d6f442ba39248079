"""`altcap memo`: renders, fits in four pages, every number traceable to the inputs, SIMULATED stamps."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import typer
from pypdf import PdfReader
from typer.testing import CliRunner

from altcap.report.commands import MemoConfig, memo_command, run_memo
from altcap.report.memo import SAMPLE_RULE, pick_samples
from altcap.study.analysis_commands import AnalysisConfig, run_analyze, run_simulate
from altcap.study.simulate import SimulationConfig

# A number not glued to a word (so BLEU-4, CIDEr-D, hashes and ids are not numbers).
NUMBER = re.compile(r"(?<![\w.\-])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.]|-\d)")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("memo")
    run_simulate(SimulationConfig(n_participants=20, effect=0.8, seed=2, out=root / "sim"))
    run_analyze(
        AnalysisConfig(
            export_dir=root / "sim",
            metrics=root / "sim" / "metrics" / "metrics.json",
            out=root / "analysis",
            n_boot=200,
        )
    )
    train = root / "run"
    train.mkdir()
    provenance = {
        "model_id": "tiny/blip",
        "family": "blip",
        "manifest": "data/manifest.jsonl",
        "train_examples": 640,
        "val_examples": 80,
        "final_step": 120,
        "epochs_completed": 3,
        "best_val_loss": 1.8734,
        "precision_used": "fp32",
        "lora_targets": ["query", "value"],
        "config": {"lora": {"r": 16, "alpha": 32, "dropout": 0.05}},
    }
    (train / "provenance.json").write_text(json.dumps(provenance))
    fig, ax = plt.subplots()
    ax.plot([3, 2, 1])
    fig.savefig(train / "loss_curves.png")
    plt.close(fig)
    return root


@pytest.fixture(scope="module")
def memo(study: Path) -> Path:
    cfg = MemoConfig(
        analysis=study / "analysis" / "analysis.json",
        metrics=study / "sim" / "metrics" / "metrics.json",
        train_dir=study / "run",
        out=study / "memo",
    )
    return run_memo(cfg).parent


def collect_input_numbers(paths: list[Path]) -> tuple[set[str], list[float]]:
    """Raw numeric tokens of the input files' text and their numeric values."""
    tokens = {t for p in paths for t in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", p.read_text())}
    return tokens, [float(t) for t in tokens]


def is_traceable(token: str, raw: set[str], values: list[float]) -> bool:
    if token in raw:
        return True
    number = float(token)
    decimals = len(token.split(".")[1].split("e")[0]) if "." in token else 0
    tolerance = 0.5 * 10**-decimals + 1e-12
    return any(math.isclose(number, v, rel_tol=5e-3) or abs(number - v) <= tolerance for v in values)


def test_memo_files_and_page_limit(memo: Path) -> None:
    assert sorted(p.name for p in memo.iterdir()) == [
        "likert.png",
        "loss.png",
        "memo.html",
        "memo.md",
        "memo.pdf",
        "provenance.json",
        "validity.png",
    ]
    pages = PdfReader(memo / "memo.pdf").pages
    assert 1 <= len(pages) <= 4
    assert all("SIMULATED" in page.extract_text() for page in pages)
    assert json.loads((memo / "provenance.json").read_text())["pdf_engine"] == "weasyprint"


def test_memo_content(memo: Path) -> None:
    text = (memo / "memo.md").read_text()
    assert text.startswith("> **SIMULATED DATA")
    assert (
        "## Recommendation: " in text
        and "r=16" in text
        and "![Training and validation loss](loss.png)" in text
    )
    assert SAMPLE_RULE in text
    assert "tracked the per-image usefulness gain" in text
    assert "SPICE not computed" in text


def test_every_number_in_memo_comes_from_inputs(memo: Path, study: Path) -> None:
    inputs = [
        study / "analysis" / "analysis.json",
        study / "sim" / "metrics" / "metrics.json",
        study / "sim" / "metrics" / "per_image.jsonl",
        study / "run" / "provenance.json",
    ]
    raw, values = collect_input_numbers(inputs)
    tokens = NUMBER.findall((memo / "memo.md").read_text())
    assert len(tokens) > 40
    untraced = [t for t in tokens if not is_traceable(t, raw, values)]
    assert untraced == []


def test_number_check_catches_an_invented_number(study: Path) -> None:
    raw, values = collect_input_numbers([study / "run" / "provenance.json"])
    assert is_traceable("1.87", raw, values) and is_traceable("640", raw, values)
    assert not is_traceable("12345.678", raw, values)
    assert NUMBER.findall("BLEU-4 CIDEr-D sha 4bdeff8cf02b r=16 -0.05 and 3") == ["16", "-0.05", "3"]


def test_real_inputs_are_not_stamped(study: Path, tmp_path: Path) -> None:
    analysis = json.loads((study / "analysis" / "analysis.json").read_text())
    analysis["simulated"] = False
    (tmp_path / "analysis.json").write_text(json.dumps(analysis))
    run_memo(MemoConfig(analysis=tmp_path / "analysis.json", out=tmp_path / "memo"))
    text = (tmp_path / "memo" / "memo.md").read_text()
    assert "SIMULATED" not in text and "No metrics.json was given." in text
    assert all("SIMULATED" not in p.extract_text() for p in PdfReader(tmp_path / "memo" / "memo.pdf").pages)


def test_sample_rule_picks_deciles() -> None:
    rows = [
        {"system": s, "image": f"im{j:02d}", "CIDEr-D": (j if s == "finetuned" else 0.0)}
        for j in range(21)
        for s in ("base", "finetuned")
    ]
    images, rule = pick_samples(rows)
    assert images == ["im02", "im10", "im18"] and rule == SAMPLE_RULE
    assert pick_samples(rows[:4])[0] == []


def test_memo_command_errors_name_the_file(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("memo")(memo_command)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(
        app, ["memo", "--analysis", str(tmp_path / "missing.json"), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2 and "missing.json" in result.output
