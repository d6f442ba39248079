"""`altcap evaluate`. Thin: parse flags, resolve the config, call `run_evaluate`.

No torch or pycocoevalcap at import time: `altcap --help` must stay fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from altcap.cli_options import ConfigPath, SetOptions, error_console, fail, resolve_config
from altcap.metrics.config import EvaluateConfig


def evaluate_command(
    refs: Annotated[
        Path | None, typer.Option("--refs", help="Manifest JSONL with reference captions.")
    ] = None,
    pred: Annotated[
        list[Path] | None, typer.Option(
            "--pred",
            help="Predictions of one system (repeatable): JSONL, JSON (COCO results too) or CSV with an "
            "image key (manifest path, file name or source id) and a caption.",
        )
    ] = None,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Name of each --pred system, in order (repeatable).")
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="train, val, test or all.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    allow_missing: Annotated[
        bool | None,
        typer.Option("--allow-missing/--no-allow-missing", help="Score only images every system captioned."),
    ] = None,
    embedding_model: Annotated[
        str | None, typer.Option("--embedding-model", help="Sentence encoder for FGD.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Bootstrap seed.")] = None,
    config: ConfigPath = None,
    set_: SetOptions = None,
) -> None:
    """Score captions with BLEU/METEOR/ROUGE-L/CIDEr-D/SPICE, FGD and accessibility stats, with CIs."""
    from altcap.metrics.evaluate import run_evaluate
    from altcap.metrics.inputs import EvaluateInputError

    flags = {
        "refs": refs,
        "pred": pred or None,
        "name": name or None,
        "split": split,
        "out": out,
        "allow_missing": allow_missing,
        "embedding_model": embedding_model,
        "seed": seed,
    }
    cfg = resolve_config(EvaluateConfig, config, flags, set_)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        metrics = run_evaluate(cfg)
    except EvaluateInputError as err:
        raise fail(str(err)) from err
    for key, reason in metrics["missing"].items():
        error_console.print(f"[yellow]not computed:[/] {key}: {reason}", highlight=False)
    typer.echo((cfg.out / "metrics.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {cfg.out}/metrics.json, per_image.jsonl, metrics.md, metrics_bar.png/.svg")
