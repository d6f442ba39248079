"""`altcap study analyze | simulate | power`: thin Typer commands and the `run_analyze` stage.

The analysis stage owns these commands; cli.py attaches them to the study Typer app with
`register(study_app)`, so users keep the names they know while study/ never imports analysis/.
pandas, scipy and statsmodels are imported inside the functions: cli.py imports this module, and
`altcap --help` must stay fast.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field, ValidationError

from altcap.analysis.decision import apply_decision_rule
from altcap.analysis.simulate import (
    SIM_EPOCH,
    SIMULATED_MARKER,
    SimulationConfig,
    simulate_metrics,
    simulate_study,
)
from altcap.cli_options import (
    ConfigPath,
    Flag,
    ForceOption,
    SetOptions,
    config_command,
    fail,
    refuse_to_overwrite,
    resolve_config,
)
from altcap.config import StageConfig
from altcap.provenance import build_provenance, require_empty_folder, sha256_file
from altcap.study.columns import PARTICIPANT_COLUMNS, RESPONSE_COLUMNS
from altcap.study.config import DecisionRule


class AnalysisConfig(StageConfig):
    """`altcap study analyze` settings (exclusion thresholds are pre-registered: change them before data)."""

    export_dir: Path = Field(
        default=Path("study_export"), description="Folder written by `altcap study export`."
    )
    metrics: Path | None = Field(
        default=None, description="metrics.json of `altcap evaluate` (per_image.jsonl beside)."
    )
    out: Path = Field(default=Path("study_analysis"), description="Output folder (must be new or empty).")
    item: str = Field(default="usefulness", description="Likert item of the primary test.")
    min_completion: float = Field(
        default=0.8, ge=0, le=1, description="Exclude below this share of main trials."
    )
    max_attention_failures: int = Field(default=0, ge=0, description="Exclude above this many failed checks.")
    n_boot: int = Field(default=2000, ge=100, description="Bootstrap resamples for CIs.")
    seed: int = Field(default=0, description="Bootstrap seed.")


def to_json_ready(value: Any) -> Any:
    """numpy scalars -> Python numbers, NaN/inf -> None, recursively."""
    if isinstance(value, dict):
        return {str(k): to_json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_decision_rule(study: dict[str, Any], study_path: Path) -> DecisionRule:
    """The frozen decision rule from study.json (defaults when the design has none)."""
    from altcap.analysis import stats

    try:
        return DecisionRule.model_validate(study.get("decision_rule") or {})
    except ValidationError as err:
        raise stats.ExportError(f"{study_path}: decision_rule is invalid: {err}") from err


def read_metrics(path: Path | None) -> dict[str, Any] | None:
    """metrics.json, or None when not given; errors name the file."""
    from altcap.analysis import stats

    if path is None:
        return None
    if not path.is_file():
        raise stats.ExportError(f"{path}: metrics file not found; run `altcap evaluate` or drop --metrics")
    return json.loads(path.read_text(encoding="utf-8"))


def analyze_export(cfg: AnalysisConfig) -> dict[str, Any]:
    """Run every analysis on the export and return the analysis.json content (no files written)."""
    from altcap.analysis import stats
    from altcap.analysis.strata import analyze_strata
    from altcap.analysis.validity import analyze_metric_validity

    responses, participants, study, simulated = stats.load_export(cfg.export_dir)
    metrics = read_metrics(cfg.metrics)
    simulated = simulated or bool(metrics and metrics.get("simulated"))
    excluded = stats.find_exclusions(
        responses, participants, cfg.min_completion, cfg.max_attention_failures
    )
    kept = responses[~responses["participant_id"].isin({e["participant_id"] for e in excluded})]
    kept = kept[kept["trial_kind"] != "practice"]
    items = [i["id"] for i in study.get("likert_items", [])] or [cfg.item]
    scale_max = max([int(i.get("scale_max", 7)) for i in study.get("likert_items", [])] or [7])
    primary = stats.run_primary_test(kept, cfg.item, cfg.n_boot, cfg.seed)
    tasks = stats.analyze_tasks(kept, cfg.n_boot, cfg.seed)
    halluc = stats.analyze_hallucination(kept, cfg.n_boot, cfg.seed)
    rule = read_decision_rule(study, cfg.export_dir / "study.json")
    decision = apply_decision_rule(
        rule,
        primary,
        (metrics or {}).get("comparisons", []),
        halluc["increase"] if halluc else None,
        tasks["accuracy_drop"] if tasks else None,
    )
    verifiers = set(responses.loc[responses["trial_kind"] == "verify", "participant_id"])
    n_all = responses["participant_id"].nunique() - len(verifiers)
    excluded_participants = [e for e in excluded if e["participant_id"] not in verifiers]
    return {
        "simulated": simulated,
        "study_id": study.get("study_id"),
        "design_sha256": study.get("design_sha256"),
        "n_participants": n_all,
        "n_included": n_all - len(excluded_participants),
        "n_excluded": len(excluded_participants),
        "n_verifiers": len(verifiers),
        "exclusions": excluded,
        "ci_percent": 95,
        "scale_max": scale_max,
        "descriptives": stats.describe_likert(kept, items, scale_max),
        "preferences": stats.describe_preferences(kept),
        "primary": primary,
        "ordinal_model": stats.fit_ordinal_model(kept, cfg.item),
        "tasks": tasks,
        "hallucination": halluc,
        "metric_validity": analyze_metric_validity(kept, cfg.metrics, cfg.item, cfg.n_boot, cfg.seed),
        "decision": decision,
        "by_context": analyze_strata(kept, cfg.item, "context", cfg.n_boot, cfg.seed),
        "by_quality_flag": analyze_strata(kept, cfg.item, "quality_flags", cfg.n_boot, cfg.seed),
    }


def run_analyze(cfg: AnalysisConfig) -> Path:
    """Analyse an export; write analysis.json, analysis.md and charts into cfg.out.

    Args:
        cfg: the analysis settings.

    Returns:
        Path of analysis.json.
    """
    from altcap.analysis.charts import draw_charts
    from altcap.analysis.markdown import write_analysis_md

    require_empty_folder(cfg.out)
    result = analyze_export(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    charts, result["chart_problems"] = draw_charts(result, cfg.out)
    inputs = {
        str(p): sha256_file(p) for p in (cfg.export_dir / "responses.csv", cfg.metrics) if p and p.is_file()
    }
    result["charts"] = [p.name for p in charts]
    result["provenance"] = build_provenance(cfg, inputs_sha256=inputs, simulated=result["simulated"])
    result = to_json_ready(result)
    out_json = cfg.out / "analysis.json"
    out_json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_analysis_md(result, cfg.out / "analysis.md")
    return out_json


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Write rows as CSV with booleans as true/false (the export's spelling)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()})


def run_simulate(cfg: SimulationConfig) -> Path:
    """Simulate a study and write it in the export format (plus SIMULATED.txt).

    Args:
        cfg: the simulation settings; cfg.out must not exist or be empty (nothing is overwritten).

    Returns:
        The output folder.
    """
    out = cfg.out
    require_empty_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    responses, participants, fx = simulate_study(cfg)
    write_csv(out / "responses.csv", responses, RESPONSE_COLUMNS)
    (out / "responses.json").write_text(json.dumps(responses, indent=1), encoding="utf-8")
    write_csv(out / "participants.csv", participants, PARTICIPANT_COLUMNS)
    design = {
        "study_id": "simulated",
        "title": "SIMULATED study",
        "simulated": True,
        "seed": cfg.seed,
        "likert_items": [
            {"id": "usefulness", "question": "How useful is this description?", "scale_max": cfg.scale_max}
        ],
        "decision_rule": DecisionRule().model_dump(mode="json"),
        "simulation": cfg.model_dump(mode="json"),
    }
    design_text = json.dumps(design, sort_keys=True)
    design |= {
        "design_sha256": hashlib.sha256(design_text.encode()).hexdigest(),
        "frozen_at": SIM_EPOCH.isoformat(),
        "provenance": build_provenance(cfg, simulated=True),
    }
    (out / "study.json").write_text(json.dumps(design, indent=2), encoding="utf-8")
    (out / SIMULATED_MARKER).write_text(
        "SIMULATED: every file here was generated by `altcap study simulate`; no person took part.\n",
        encoding="utf-8",
    )
    if cfg.with_metrics:
        simulate_metrics(cfg, fx, out / "metrics")
    return out


@config_command(
    AnalysisConfig,
    [Flag("export_dir", argument=True), "metrics", "out"],
    example="altcap study analyze study_sim --metrics study_sim/metrics/metrics.json --out study_analysis",
)
def analyze_command(cfg: AnalysisConfig, force: ForceOption = False) -> None:
    """Analyse a study export: exclusions, descriptives, primary test, models, decision.

    An earlier analysis in --out is kept unless --force.
    """
    refuse_to_overwrite(cfg.out, ["analysis.*", "likert.*", "metric_validity.*"], force)
    from altcap.analysis.stats import ExportError

    try:
        path = run_analyze(cfg)
    except (ExportError, FileExistsError) as err:
        raise fail(str(err)) from err
    typer.echo(f"wrote {path} and analysis.md")


@config_command(
    SimulationConfig,
    [Flag("n_participants", name="n"), "effect", "seed", "out"],
    example="altcap study simulate --n 10 --out study_sim",
)
def simulate_command(cfg: SimulationConfig) -> None:
    """Simulate a study in the export format (stamped SIMULATED), for demos and tests."""
    try:
        path = run_simulate(cfg)
    except FileExistsError as err:
        raise fail(str(err)) from err
    typer.echo(f"wrote SIMULATED study to {path}")


# power_command's parameter -> PowerConfig field (tests/test_config.py keeps them in sync).
POWER_FLAGS = {"n": "n_participants", "effect": "effect", "sims": "sims", "out": "out"}


def power_command(
    n: Annotated[int | None, typer.Option("--n", help="Planned participants.")] = None,
    effect: Annotated[float | None, typer.Option(help="Minimum effect of interest (log-odds).")] = None,
    sims: Annotated[int | None, typer.Option(help="Simulated studies.")] = None,
    out: Annotated[Path | None, typer.Option(help="Optional power.json to write.")] = None,
    config: ConfigPath = None,
    set_: SetOptions = None,
) -> None:
    """Simulation-based power of the primary test for the planned n."""
    # Hand-written, not generated: PowerConfig's module imports pandas and scipy, which
    # `altcap --help` must not pay for.
    given = locals()
    flags = {field: given[param] for param, field in POWER_FLAGS.items()}
    from altcap.analysis.power import PowerConfig, run_power

    cfg = resolve_config(PowerConfig, config, flags, set_)
    result = run_power(cfg)
    power = result["power"]
    typer.echo(
        f"power {power['share']:.3f} (95% CI {power['ci_low']:.3f}-{power['ci_high']:.3f}) for "
        f"n={cfg.n_participants}, effect={cfg.effect}, alpha={cfg.alpha}, {cfg.sims} simulated studies"
    )
    if cfg.out is not None:
        result["provenance"] = build_provenance(cfg)
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        cfg.out.write_text(json.dumps(to_json_ready(result), indent=2), encoding="utf-8")


def register(study_app: typer.Typer) -> None:
    """Attach analyze, simulate and power to the `altcap study` Typer app."""
    study_app.command("analyze")(analyze_command)
    study_app.command("simulate")(simulate_command)
    study_app.command("power", epilog="Example: altcap study power --n 20 --sims 50")(power_command)
