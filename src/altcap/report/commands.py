"""`altcap memo`: the go/no-go memo (Markdown + PDF) from the analysis, metrics and training run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field

from altcap.cli_options import ConfigPath, SetOptions, fail, resolve_config
from altcap.config import StageConfig
from altcap.provenance import build_provenance, sha256_file
from altcap.report.memo import MemoInputs, read_json, render_memo_markdown


class MemoConfig(StageConfig):
    """`altcap memo` settings."""

    analysis: Path = Field(
        default=Path("study_analysis/analysis.json"), description="analysis.json of analyze."
    )
    metrics: Path | None = Field(default=None, description="metrics.json of `altcap evaluate`.")
    train_dir: Path | None = Field(
        default=None, description="Training run folder (provenance.json, loss_curves.png)."
    )
    captions: list[str] = Field(
        default_factory=list,
        description="SYSTEM=captions.jsonl pairs, used when per_image.jsonl has no captions.",
    )
    out: Path = Field(default=Path("memo"), description="Output folder (must be new or empty).")


def read_inputs(cfg: MemoConfig) -> MemoInputs:
    """Read every memo input; errors name the file."""
    from altcap.infer.captions_file import read_captions

    inputs = MemoInputs(analysis=read_json(cfg.analysis, "analysis.json (run `altcap study analyze`)"))
    inputs.input_files.append(cfg.analysis)
    if cfg.metrics is not None:
        inputs.metrics = read_json(cfg.metrics, "metrics.json (run `altcap evaluate`)")
        inputs.input_files.append(cfg.metrics)
        per_image = cfg.metrics.parent / "per_image.jsonl"
        if per_image.is_file():
            lines = per_image.read_text(encoding="utf-8").splitlines()
            inputs.per_image = [json.loads(line) for line in lines if line.strip()]
            inputs.input_files.append(per_image)
    if cfg.train_dir is not None:
        inputs.train = read_json(
            cfg.train_dir / "provenance.json", "training provenance (run `altcap train`)"
        )
        inputs.input_files.append(cfg.train_dir / "provenance.json")
    for pair in cfg.captions:
        system, sep, path = pair.partition("=")
        if not sep:
            raise ValueError(f"--captions {pair!r}: expected SYSTEM=PATH, e.g. base=captions_base.jsonl")
        inputs.captions[system] = {r.image: r.caption for r in read_captions(Path(path))}
        inputs.input_files.append(Path(path))
    return inputs


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

    if cfg.out.exists() and any(cfg.out.iterdir()):
        raise FileExistsError(
            f"{cfg.out}: folder is not empty; pass a new --out folder (nothing was overwritten)"
        )
    inputs = read_inputs(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    charts = copy_charts(cfg)
    hashes = {str(p): sha256_file(p) for p in inputs.input_files}
    lines = [f"`{path}` (sha256 `{digest[:12]}`)" for path, digest in hashes.items()]
    text = render_memo_markdown(inputs, charts, lines)
    (cfg.out / "memo.md").write_text(text, encoding="utf-8")
    engine = write_pdf(text, cfg.out / "memo.pdf", inputs.simulated)
    provenance = build_provenance(cfg, inputs_sha256=hashes, simulated=inputs.simulated, pdf_engine=engine)
    (cfg.out / "provenance.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    return cfg.out / "memo.pdf"


def memo_command(
    analysis: Annotated[Path | None, typer.Option(help="analysis.json from `altcap study analyze`.")] = None,
    metrics: Annotated[Path | None, typer.Option(help="metrics.json from `altcap evaluate`.")] = None,
    train_dir: Annotated[Path | None, typer.Option(help="Training run folder.")] = None,
    captions: Annotated[list[str] | None, typer.Option(help="SYSTEM=captions.jsonl (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (new or empty).")] = None,
    config: ConfigPath = None,
    set_: SetOptions = None,
) -> None:
    """Write the go/no-go memo (Markdown and PDF, at most four pages)."""
    flags = {
        "analysis": analysis,
        "metrics": metrics,
        "train_dir": train_dir,
        "captions": captions,
        "out": out,
    }
    cfg = resolve_config(MemoConfig, config, flags, set_)
    try:
        path = run_memo(cfg)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        raise fail(str(err)) from err
    typer.echo(f"wrote {path} and memo.md")
