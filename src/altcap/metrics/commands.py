"""`altcap evaluate`. Thin: parse flags, resolve the config, call `run_evaluate`.

No torch or pycocoevalcap at import time: `altcap --help` must stay fast.
"""

from __future__ import annotations

import logging

import typer

from altcap.cli_options import ForceOption, config_command, error_console, fail, refuse_to_overwrite
from altcap.cli_output import notes_shown
from altcap.config import PipelineSection
from altcap.data.sample import sample_manifest
from altcap.metrics.config import EvaluateConfig


def _drop_not_computed(record: logging.LogRecord) -> bool:
    return "not computed" not in record.getMessage()


EVALUATE_OUTPUTS = ["metrics.json", "per_image.jsonl", "metrics.md", "metrics_bar.*"]


# `altcap evaluate --config demo.yaml --pred ...` scores as `altcap run demo.yaml` does: its evaluate
# section, references from the pipeline's manifest, the split it captioned.
EVALUATE_SECTION = PipelineSection(
    "evaluate",
    lifts={"manifest": "refs", "caption.split": "split"},
    when_null={"manifest": sample_manifest},
)


@config_command(
    EvaluateConfig,
    ["refs", "pred", "name", "split", "out", "allow_missing", "embedding_model", "seed"],
    example="altcap evaluate --refs src/altcap/sample/manifest.jsonl --pred captions.jsonl --out metrics",
    config_argument=True,
    section=EVALUATE_SECTION,
)
def evaluate_command(cfg: EvaluateConfig, force: ForceOption = False) -> None:
    """Score captions with BLEU/METEOR/ROUGE-L/CIDEr-D/SPICE, FGD and accessibility stats, with CIs.

    An earlier evaluation in --out is kept unless --force.
    """
    from altcap.metrics.evaluate import run_evaluate
    from altcap.metrics.inputs import EvaluateInputError

    refuse_to_overwrite(cfg.out, EVALUATE_OUTPUTS, force)
    # Every metric not computed is listed once, at the end; the stage's early warning would repeat it.
    logging.getLogger("altcap.metrics.evaluate").addFilter(_drop_not_computed)
    try:
        metrics = run_evaluate(cfg)
    except EvaluateInputError as err:
        raise fail(str(err)) from err
    for key, reason in metrics["missing"].items():
        if notes_shown():
            error_console.print(f"[yellow]not computed:[/] {key}: {reason}", highlight=False)
    typer.echo((cfg.out / "metrics.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {cfg.out}/metrics.json, per_image.jsonl, metrics.md, metrics_bar.png/.svg")
