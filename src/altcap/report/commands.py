"""`altcap memo`: the go/no-go memo (Markdown + PDF) from the analysis, metrics and training run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from pydantic import Field

from altcap.cli_options import ForceOption, config_command, fail, refuse_to_overwrite
from altcap.config import StageConfig
from altcap.provenance import build_provenance, require_empty_folder, sha256_file
from altcap.report.inputs import read_json
from altcap.report.memo import MemoInputs, render_memo_markdown
from altcap.report.training import read_train_run


class MemoConfig(StageConfig):
    """`altcap memo` settings."""

    analysis: Path = Field(
        default=Path("study_analysis/analysis.json"), description="analysis.json of analyze."
    )
    metrics: Path | None = Field(default=None, description="metrics.json of `altcap evaluate`.")
    train_dir: Path | None = Field(
        default=None,
        description="Training run folder (provenance.json, config.yaml, train_log.jsonl, loss_curves.png).",
    )
    power: Path | None = Field(default=None, description="power.json of `altcap study power --out`.")
    captions: list[str] = Field(
        default_factory=list,
        description="SYSTEM=captions.jsonl pairs, used when per_image.jsonl has no captions.",
    )
    out: Path = Field(default=Path("memo"), description="Output folder (must be new or empty).")


def read_inputs(cfg: MemoConfig) -> MemoInputs:
    """Read every memo input; errors name the file."""
    inputs = MemoInputs(analysis=read_json(cfg.analysis, "analysis.json (run `altcap study analyze`)"))
    inputs.input_files.append(cfg.analysis)
    if cfg.metrics is not None:
        read_metrics_inputs(cfg.metrics, inputs)
    if cfg.train_dir is not None:
        inputs.train = read_train_run(cfg.train_dir)
        inputs.input_files += inputs.train.files
    if cfg.power is not None:
        inputs.power = read_json(cfg.power, "power analysis (run `altcap study power --out power.json`)")
        if "power" not in inputs.power:
            raise ValueError(f"{cfg.power}: no 'power' entry; write it with `altcap study power --out`")
        inputs.input_files.append(cfg.power)
    read_caption_inputs(cfg.captions, inputs)
    inputs.image_dirs.append(Path.cwd())
    return inputs


def read_metrics_inputs(metrics_path: Path, inputs: MemoInputs) -> None:
    """metrics.json and the per_image.jsonl beside it; relative image paths start at its manifest."""
    inputs.metrics = read_json(metrics_path, "metrics.json (run `altcap evaluate`)")
    inputs.input_files.append(metrics_path)
    per_image = metrics_path.parent / "per_image.jsonl"
    if per_image.is_file():
        lines = per_image.read_text(encoding="utf-8").splitlines()
        inputs.per_image = [json.loads(line) for line in lines if line.strip()]
        inputs.input_files.append(per_image)
    refs = inputs.metrics.get("refs")
    if refs:
        # the manifest's path is relative to where `altcap evaluate` ran; try both anchors
        inputs.image_dirs += [Path(refs).parent, metrics_path.parent / Path(refs).parent]
    inputs.image_dirs.append(metrics_path.parent)


def read_caption_inputs(pairs: list[str], inputs: MemoInputs) -> None:
    """--captions SYSTEM=PATH files (their captions win over per_image.jsonl's)."""
    from altcap.infer.captions_file import read_captions

    for pair in pairs:
        system, sep, path = pair.partition("=")
        if not sep:
            raise ValueError(f"--captions {pair!r}: expected SYSTEM=PATH, e.g. base=captions_base.jsonl")
        inputs.captions[system] = {r.image: r.caption for r in read_captions(Path(path))}
        inputs.input_files.append(Path(path))
        inputs.image_dirs.append(Path(path).parent)


def copy_charts(cfg: MemoConfig) -> dict[str, str]:
    """Copy the analysis charts and loss curves into the memo folder; returns name -> file name."""
    charts = {}
    sources = {
        "likert": cfg.analysis.parent / "likert.png",
        "validity": cfg.analysis.parent / "metric_validity.png",
        "loss": cfg.train_dir / "loss_curves.png" if cfg.train_dir else None,
    }
    for name, source in sources.items():
        if source is not None and source.is_file():
            target = cfg.out / f"{name}.png"
            shutil.copyfile(source, target)
            charts[name] = target.name
    return charts


def run_memo(cfg: MemoConfig) -> Path:
    """Build memo.md, memo.html, memo.pdf and provenance.json in cfg.out.

    Args:
        cfg: the memo settings.

    Returns:
        Path of memo.pdf.
    """
    from altcap.report.pdf import write_pdf

    require_empty_folder(cfg.out)
    inputs = read_inputs(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    charts = copy_charts(cfg)
    hashes = {str(p): sha256_file(p) for p in inputs.input_files}
    lines = [f"`{path}` (sha256 `{digest[:12]}`)" for path, digest in hashes.items()]
    text = render_memo_markdown(inputs, charts, lines, cfg.out)
    (cfg.out / "memo.md").write_text(text, encoding="utf-8")
    engine = write_pdf(text, cfg.out / "memo.pdf", inputs.simulated)
    provenance = build_provenance(cfg, inputs_sha256=hashes, simulated=inputs.simulated, pdf_engine=engine)
    (cfg.out / "provenance.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    return cfg.out / "memo.pdf"


MEMO_OUTPUTS = ["memo.*", "provenance.json", "likert.png", "validity.png", "loss.png"]


@config_command(
    MemoConfig,
    ["analysis", "metrics", "train_dir", "power", "captions", "out"],
    example="altcap memo --analysis runs/demo/07_analysis/analysis.json "
    "--metrics runs/demo/05_evaluate/metrics.json --out memo",
)
def memo_command(cfg: MemoConfig, force: ForceOption = False) -> None:
    """Write the go/no-go memo (Markdown and PDF, at most four pages).

    An earlier memo in --out is kept unless --force.
    """
    refuse_to_overwrite(cfg.out, MEMO_OUTPUTS, force)
    try:
        path = run_memo(cfg)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        raise fail(str(err)) from err
    typer.echo(f"wrote {path} and memo.md")
