"""Stage commands read an `altcap run` YAML the way `altcap run` does (#27 item 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.config import load_config
from altcap.data.sample import sample_manifest
from altcap.models.loading import ModelConfig
from altcap.pipeline.commands import default_config_path
from altcap.pipeline.run import RunConfig, build_stages

runner = CliRunner()
DEMO = default_config_path()


def capture(monkeypatch: pytest.MonkeyPatch, target: str, result: Any = None) -> list[Any]:
    """Replace `module.function` by one that records the config it is given."""
    module, name = target.rsplit(".", 1)
    seen: list[Any] = []

    def fake(cfg: Any) -> Any:
        seen.append(cfg)
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(f"{module}.{name}", fake)
    return seen


def pipeline_stage_config(name: str) -> Any:
    run_cfg = load_config(RunConfig, DEMO)
    return next(s.config for s in build_stages(run_cfg) if s.name == name)


def test_default_model_is_the_offline_altcap_mini() -> None:
    assert ModelConfig().model_id == "altcap-mini"
    assert RunConfig().model.model_id == "altcap-mini"


def test_train_with_the_demo_yaml_trains_what_run_trains(monkeypatch, tmp_path: Path) -> None:
    seen = capture(monkeypatch, "altcap.train.run.run_train", tmp_path)
    result = runner.invoke(app, ["train", "--config", str(DEMO)])
    assert result.exit_code == 0, result.output
    pipeline = pipeline_stage_config("train")
    cfg = seen[0]
    # Same run except where `altcap run` puts things: its own folder, its checked manifest copy.
    ignore = {"output_dir": True, "data": {"manifest"}}
    assert cfg.model_dump(exclude=ignore) == pipeline.model_dump(exclude=ignore)
    assert cfg.model.model_id == "altcap-mini" and cfg.max_steps == 15 and cfg.lora.r == 16
    assert cfg.data.manifest == sample_manifest()
    # the positional form and flags on top of it
    result = runner.invoke(app, ["train", str(DEMO), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    assert seen[1].max_steps == 2 and seen[1].lora.r == 16


def test_caption_with_the_demo_yaml_captions_what_run_captions(monkeypatch) -> None:
    from altcap.infer.caption import CaptionSummary

    summary = CaptionSummary(
        out=Path("c.jsonl"), total_images=0, skipped_images=0, written_images=0, seconds=0
    )
    seen = capture(monkeypatch, "altcap.infer.caption.run_caption", summary)
    result = runner.invoke(app, ["caption", "--config", str(DEMO), "--limit", "2"])
    assert result.exit_code == 0, result.output
    pipeline = pipeline_stage_config("caption base")
    cfg = seen[0]
    assert cfg.model == pipeline.model and cfg.generation == pipeline.generation
    assert (cfg.split, cfg.batch_size, cfg.limit) == (pipeline.split, pipeline.batch_size, 2)
    assert cfg.manifest == sample_manifest()


def test_evaluate_with_the_demo_yaml_scores_as_run_does(monkeypatch, tmp_path: Path) -> None:
    seen = capture(monkeypatch, "altcap.metrics.evaluate.run_evaluate", RuntimeError("stop here"))
    pred = tmp_path / "p.jsonl"
    with pytest.raises(RuntimeError, match="stop here"):
        runner.invoke(app, ["evaluate", str(DEMO), "--pred", str(pred)], catch_exceptions=False)
    pipeline = pipeline_stage_config("evaluate")
    cfg = seen[0]
    assert (cfg.bootstrap_samples, cfg.split) == (pipeline.bootstrap_samples, pipeline.split)
    assert cfg.refs == sample_manifest() and cfg.pred == [pred]


def test_caption_split_all_captions_every_record_and_bad_split_lists_valid_ones(monkeypatch) -> None:
    from altcap.infer.config import CaptionConfig
    from altcap.infer.items import collect_items

    cfg = CaptionConfig(manifest=sample_manifest(), split="all")
    assert len(collect_items(cfg)) == 60  # 40 train + 10 val + 10 test
    seen = capture(monkeypatch, "altcap.infer.caption.run_caption", RuntimeError("stop here"))
    with pytest.raises(RuntimeError):
        runner.invoke(
            app, ["caption", "--manifest", str(sample_manifest()), "--split", "all"], catch_exceptions=False
        )
    assert seen[0].split is None
    bad = runner.invoke(app, ["caption", "--manifest", str(sample_manifest()), "--split", "everything"])
    assert bad.exit_code == 2
    assert all(f"'{name}'" in bad.output for name in ("train", "val", "test", "all"))


def test_both_caption_stages_use_the_instruction_and_context_template_trained_with() -> None:
    run_cfg = load_config(RunConfig, DEMO)
    run_cfg.train.data.prompt = "Describe this photo for a blind reader."
    run_cfg.train.data.context_template = "Seen in {context}. {prompt}"
    captions = [s.config for s in build_stages(run_cfg) if s.name.startswith("caption")]
    assert len(captions) == 2
    assert {(c.prompt, c.context_template) for c in captions} == {
        ("Describe this photo for a blind reader.", "Seen in {context}. {prompt}")
    }
