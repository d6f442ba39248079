"""`altcap run` honours output folders given in a section and splits unsplit manifests (#27 items 5, 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.config import ConfigError, load_config
from altcap.data.manifest import read_manifest
from altcap.data.sample import sample_manifest
from altcap.pipeline.paths import check_pipeline_paths, fresh_folder
from altcap.pipeline.run import RunConfig, build_stages, write_summary
from altcap.pipeline.stages import StageResult, run_stages

runner = CliRunner()


def run_config(tmp_path: Path, *sets: str) -> RunConfig:
    return load_config(RunConfig, None, {}, [f"run_dir={tmp_path / 'run'}", *sets])


def test_user_given_output_folders_are_where_stages_write_and_read(tmp_path: Path) -> None:
    train_dir, metrics_dir = tmp_path / "my-train", tmp_path / "my-metrics"
    cfg = run_config(tmp_path, f"train.output_dir={train_dir}", f"evaluate.out={metrics_dir}")
    check_pipeline_paths(cfg)
    stages = {s.name: s for s in build_stages(cfg)}
    assert stages["train"].config.output_dir == train_dir
    assert stages["caption fine-tuned"].config.model.adapter == str(train_dir / "adapter")
    assert stages["evaluate"].config.out == metrics_dir
    assert stages["analysis"].config.metrics == metrics_dir / "metrics.json"
    assert stages["memo"].config.train_dir == train_dir
    cfg.run_dir.mkdir(parents=True)
    results = [StageResult(name, "ran", 1.0) for name in stages]
    summary = write_summary(cfg, results).read_text()
    assert f"[{train_dir}]({train_dir})" in summary and f"{metrics_dir / 'metrics.md'}" in summary


def test_two_stages_writing_one_place_and_wired_fields_are_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    cfg = run_config(
        tmp_path, f"train.output_dir={shared}", f"analysis.out={shared}", "train.data.manifest=x.jsonl"
    )
    with pytest.raises(ConfigError) as err:
        check_pipeline_paths(cfg)
    text = str(err.value)
    assert f"train and analysis stages would both write into {shared}" in text or (
        f"analysis and train stages would both write into {shared}" in text
    )
    assert "train.data.manifest: set by the pipeline between stages; set the top-level `manifest`" in text
    result = runner.invoke(
        app, ["run", "--run-dir", str(tmp_path / "r"), "--set", f"evaluate.out={tmp_path / 'r'}"]
    )
    assert result.exit_code == 2 and "would both write into" in result.output
    assert not (tmp_path / "r" / "config.yaml").exists()  # refused before anything was written


def test_a_users_folder_is_never_emptied(tmp_path: Path) -> None:
    run_dir, mine = tmp_path / "run", tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not written by this run"):
        fresh_folder(mine, run_dir)
    assert (mine / "notes.txt").read_text() == "keep me"
    ours = tmp_path / "ours"
    fresh_folder(ours, run_dir).mkdir()
    (ours / "metrics.json").write_text("{}")
    fresh_folder(ours, run_dir)  # written by this run before: a rerun may replace it
    assert not ours.exists()


def test_a_manifest_without_splits_is_split_as_data_split_would(tmp_path: Path, capsys) -> None:
    records = read_manifest(sample_manifest())[:20]
    rows = [
        {"image": str((sample_manifest().parent / r.image).resolve()), "captions": r.captions}
        for r in records
    ]
    manifest = tmp_path / "unsplit.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cfg = run_config(tmp_path, f"manifest={manifest}", "check.check_images=false", "split.seed=3")
    stages = build_stages(cfg)
    assert [s.name for s in stages[:2]] == ["data check", "data split"]
    run_stages(stages[:2], cfg.run_dir / ".stages")
    split_manifest = stages[2].config.manifest
    assert all(r.split in ("train", "val", "test") for r in read_manifest(split_manifest))
    report = json.loads((split_manifest.parent / "split_report.json").read_text())
    assert report["newly_assigned"] == 20 and report["provenance"]["config"]["seed"] == 3
    out = " ".join(capsys.readouterr().err.split())  # a note for the user: stderr, as every note
    assert "20 records had no split" in out and "seed 3, val 0.1, test 0.1" in out
    assert "To use your own split" in out
