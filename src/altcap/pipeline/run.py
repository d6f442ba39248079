"""`altcap run CONFIG.yaml`: the whole job in one resumable command.

data check -> data split (only records without a split get one) -> caption the test split with
the base model -> LoRA fine-tune -> caption with the fine-tuned model -> evaluate both -> user
study (simulated in demo mode, or a real study's export) -> analysis -> memo. Every stage writes
into one run folder unless its section names another output folder (`pipeline/paths.py`);
`summary.md` links the outputs. Stage sections reuse each stage's own config class; the pipeline
fills in the paths between stages and refuses a section that sets one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from altcap.analysis.commands import AnalysisConfig
from altcap.analysis.simulate import SimulationConfig
from altcap.cli_output import show_note
from altcap.config import StageConfig, dump_config
from altcap.data.configs import DataCheckConfig, DataSplitConfig
from altcap.infer.config import GenerationConfig
from altcap.metrics.config import EvaluateConfig
from altcap.models.loading import ModelConfig
from altcap.pipeline.paths import check_pipeline_paths, fresh_folder, stage_folders
from altcap.pipeline.stages import Stage, StageResult, run_stages
from altcap.report.commands import MemoConfig
from altcap.train.config import TrainConfig


class CaptionStageConfig(StageConfig):
    """How both systems caption the evaluation split (same settings for base and fine-tuned)."""

    split: Literal["train", "val", "test", "all"] = Field(
        default="test", description="Manifest split captioned and evaluated; all = every record."
    )
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Decoding settings.")
    batch_size: int = Field(default=16, ge=1, description="Images per generate call.")
    limit: int | None = Field(default=None, ge=1, description="Caption only the first N images.")


class StudyStageConfig(StageConfig):
    """Where the user-study responses come from."""

    mode: Literal["simulate", "export"] = Field(
        default="simulate",
        description="simulate = SIMULATED participants (demo; stamped everywhere); export = the folder "
        "of a real study's `altcap study export`.",
    )
    export_dir: Path | None = Field(default=None, description="Real study export folder (mode=export).")

    @model_validator(mode="after")
    def _export_needs_dir(self) -> StudyStageConfig:
        if self.mode == "export" and self.export_dir is None:
            raise ValueError(
                "study.mode=export needs study.export_dir (the folder `altcap study export` wrote)"
            )
        return self


class RunConfig(StageConfig):
    """The whole pipeline; one section per stage."""

    run_dir: Path = Field(default=Path("runs/demo"), description="Folder every stage writes into.")
    manifest: Path | None = Field(default=None, description="Dataset manifest; None = the embedded sample.")
    model: ModelConfig = Field(
        default_factory=ModelConfig, description="Base model (both systems); default altcap-mini (offline)."
    )
    check: DataCheckConfig = Field(default_factory=DataCheckConfig, description="`data check` settings.")
    split: DataSplitConfig = Field(
        default_factory=DataSplitConfig,
        description="`data split` settings for records without a split (seed, val_fraction, test_fraction).",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="`train` settings.")
    caption: CaptionStageConfig = Field(default_factory=CaptionStageConfig, description="Captioning.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="`evaluate` settings.")
    study: StudyStageConfig = Field(default_factory=StudyStageConfig, description="Study source.")
    simulation: SimulationConfig = Field(
        default_factory=SimulationConfig, description="Simulated participants (study.mode=simulate)."
    )
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig, description="`study analyze` settings.")


def _paths(cfg: RunConfig) -> dict[str, Path]:
    folders = stage_folders(cfg)
    return {
        **folders,
        "check_report": folders["check"] / "check_report.json",
        "clean": folders["check"] / "manifest.clean.jsonl",
        "manifest": folders["split"] / "manifest.jsonl",  # the checked, split manifest stages use
        "base": cfg.run_dir / "02_captions" / "base.jsonl",
        "finetuned": cfg.run_dir / "04_captions" / "finetuned.jsonl",
    }


def _caption_stage(cfg: RunConfig, name: str, out: Path, adapter: Path | None, inputs: list[Path]) -> Stage:
    from altcap.infer.config import CaptionConfig

    model = cfg.model.model_copy(update={"adapter": str(adapter) if adapter else None})
    # Both systems read the instruction (and context template) the fine-tune was trained with, so
    # the comparison differs in the weights alone.
    caption_cfg = CaptionConfig(
        model=model,
        manifest=_paths(cfg)["manifest"],
        split=cfg.caption.split,
        out=out,
        prompt=cfg.train.data.prompt,
        context_template=cfg.train.data.context_template,
        generation=cfg.caption.generation,
        batch_size=cfg.caption.batch_size,
        limit=cfg.caption.limit,
    )

    def run() -> None:
        from altcap.infer.caption import run_caption
        from altcap.infer.captions_file import provenance_path

        # A crashed run with the same settings resumes; changed settings start the file afresh.
        provenance = provenance_path(out)
        if provenance.is_file():
            recorded = json.loads(provenance.read_text(encoding="utf-8")).get("config")
            if recorded != caption_cfg.model_dump(mode="json"):
                out.unlink(missing_ok=True)
                provenance.unlink()
        run_caption(caption_cfg)

    return Stage(name, caption_cfg, inputs, [out], run)


def build_stages(cfg: RunConfig) -> list[Stage]:
    """The pipeline's stages with every path between them filled in."""
    p = _paths(cfg)
    check = cfg.check.model_copy(update={"manifest": cfg.manifest, "out_dir": p["check"]})
    source = [cfg.manifest] if cfg.manifest else []
    train = cfg.train.model_copy(
        update={
            "model": cfg.model,
            "data": cfg.train.data.model_copy(update={"manifest": p["manifest"]}),
            "output_dir": p["train"],
        }
    )
    adapter = p["train"] / "adapter"
    export_dir = p["study"] if cfg.study.mode == "simulate" else cfg.study.export_dir
    analysis = cfg.analysis.model_copy(
        update={
            "export_dir": export_dir,
            "metrics": p["evaluate"] / "metrics.json",
            "out": p["analysis"],
        }
    )
    memo = MemoConfig(
        analysis=p["analysis"] / "analysis.json",
        metrics=p["evaluate"] / "metrics.json",
        train_dir=p["train"],
        out=p["memo"],
    )
    return [
        Stage("data check", check, source, [p["clean"]], lambda: _run_check(check)),
        _split_stage(cfg, p),
        _caption_stage(cfg, "caption base", p["base"], None, [p["manifest"]]),
        Stage("train", train, [p["manifest"]], [adapter], lambda: _run_train(train, cfg.run_dir)),
        _caption_stage(cfg, "caption fine-tuned", p["finetuned"], adapter, [p["manifest"], adapter]),
        _evaluate_stage(cfg, p),
        _study_stage(cfg, p),
        Stage(
            "analysis",
            analysis,
            [export_dir, p["evaluate"] / "metrics.json"],
            [analysis.out / "analysis.json"],
            lambda: _run_analysis(analysis, cfg.run_dir),
        ),
        Stage(
            "memo",
            memo,
            [analysis.out / "analysis.json", p["evaluate"]],
            [p["memo"] / "memo.md"],
            lambda: _run_memo(memo, cfg.run_dir),
        ),
    ]


def _evaluate_stage(cfg: RunConfig, p: dict[str, Path]) -> Stage:
    evaluate = cfg.evaluate.model_copy(
        update={
            "refs": p["manifest"],
            "pred": [p["base"], p["finetuned"]],
            "name": ["base", "finetuned"],
            "out": p["evaluate"],
            "split": cfg.caption.split,
            # caption.limit captions a subset on purpose: score those images (recorded in metrics.json).
            "allow_missing": cfg.evaluate.allow_missing or cfg.caption.limit is not None,
        }
    )
    metrics = p["evaluate"] / "metrics.json"
    inputs = [p["manifest"], p["base"], p["finetuned"]]
    return Stage("evaluate", evaluate, inputs, [metrics], lambda: _run_evaluate(evaluate, cfg.run_dir))


def _study_stage(cfg: RunConfig, p: dict[str, Path]) -> Stage:
    if cfg.study.mode == "export":
        export_dir = cfg.study.export_dir
        return Stage("study (real export)", cfg.study, [export_dir], [export_dir], lambda: None)

    def run() -> None:
        from altcap.analysis.commands import run_simulate
        from altcap.infer.captions_file import read_captions

        images = [record.image for record in read_captions(p["base"])]
        study_dir = fresh_folder(p["study"], cfg.run_dir)
        simulation = cfg.simulation.model_copy(update={"out": study_dir, "with_metrics": False})
        run_simulate(SimulationConfig.model_validate(simulation.model_dump() | {"images": images}))

    return Stage("study (SIMULATED)", cfg.simulation, [p["base"]], [p["study"] / "responses.csv"], run)


def _run_check(check: DataCheckConfig) -> None:
    from altcap.data.check import run_data_check

    run_data_check(check)


def _split_stage(cfg: RunConfig, p: dict[str, Path]) -> Stage:
    split = cfg.split.model_copy(
        update={"manifest": p["clean"], "out_dir": p["split"], "check_report": p["check_report"]}
    )

    def run() -> None:
        from altcap.data.split import run_data_split

        fresh_folder(p["split"], cfg.run_dir)
        report = run_data_split(split)
        if report["newly_assigned"]:
            show_note(
                f"{report['newly_assigned']} records had no split: split them as `altcap data split` does "
                f"(seed {split.seed}, val {split.val_fraction}, test {split.test_fraction}; recorded in "
                f"{p['split'] / 'split_report.json'}). To use your own split, give every record a split "
                "(`altcap data split MANIFEST`) and pass that manifest."
            )

    return Stage("data split", split, [p["clean"], p["check_report"]], [p["manifest"]], run)


def _run_train(train: TrainConfig, run_dir: Path) -> None:
    from altcap.train.run import run_train

    # config.yaml is written when training finishes: a finished run whose stage reruns had its config
    # or data changed and starts afresh; an unfinished one resumes from its last checkpoint.
    if (train.output_dir / "config.yaml").is_file():
        fresh_folder(train.output_dir, run_dir)
    run_train(train)


def _run_evaluate(evaluate: EvaluateConfig, run_dir: Path) -> None:
    from altcap.metrics.evaluate import run_evaluate

    fresh_folder(evaluate.out, run_dir)
    run_evaluate(evaluate)


def _run_analysis(analysis: AnalysisConfig, run_dir: Path) -> None:
    from altcap.analysis.commands import run_analyze

    fresh_folder(analysis.out, run_dir)
    run_analyze(analysis)


def _run_memo(memo: MemoConfig, run_dir: Path) -> None:
    from altcap.report.commands import run_memo

    fresh_folder(memo.out, run_dir)
    run_memo(memo)


def write_summary(cfg: RunConfig, results: list[StageResult]) -> Path:
    """summary.md: one line per stage with its status, time and main output, relative to run_dir."""
    p = _paths(cfg)
    links = {
        "data check": p["check"] / "check_report.json",
        "data split": p["split"] / "split_report.json",
        "caption base": p["base"],
        "train": p["train"],
        "caption fine-tuned": p["finetuned"],
        "evaluate": p["evaluate"] / "metrics.md",
        "analysis": p["analysis"] / "analysis.md",
        "memo": p["memo"] / "memo.pdf",
    }
    simulated = cfg.study.mode == "simulate"
    lines = ["# altcap run summary", ""]
    if simulated:
        lines += ["**SIMULATED study data**: the user-study results come from simulated participants.", ""]
    lines += ["| stage | status | seconds | output |", "| --- | --- | --- | --- |"]
    for result in results:
        target = links.get(result.name, p["study"])
        rel = target.relative_to(cfg.run_dir) if target.is_relative_to(cfg.run_dir) else target
        lines.append(f"| {result.name} | {result.status} | {result.seconds:.1f} | [{rel}]({rel}) |")
    path = cfg.run_dir / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_pipeline(cfg: RunConfig) -> Path:
    """Run (or resume) the whole pipeline; returns the memo's PDF path.

    Raises:
        ConfigError: a section sets a path the pipeline wires, or two stages share an output folder.
    """
    check_pipeline_paths(cfg)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, cfg.run_dir / "config.yaml")
    results = run_stages(build_stages(cfg), cfg.run_dir / ".stages")
    write_summary(cfg, results)
    return _paths(cfg)["memo"] / "memo.pdf"
