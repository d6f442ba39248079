"""`altcap data ...` commands. Thin: parse flags, resolve the config, call `run_<stage>`.

Heavy imports (Pillow, numpy, imagehash) happen inside the commands so `altcap --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from altcap.cli_options import Flag, config_command, fail
from altcap.data.configs import IMPORT_FORMATS, DataCheckConfig, DataImportConfig, DataSplitConfig

app = typer.Typer(no_args_is_help=True, help="Import, check and split captioning datasets.")
console = Console()

OUT = Flag("out_dir", name="out", short="-o")


def _run_or_fail(run: Callable[[Any], dict], cfg: Any, error_type: type[Exception]) -> dict:
    """`run(cfg)`; the stage's bad-input error becomes a clean CLI error (exit 2, no traceback)."""
    try:
        return run(cfg)
    except error_type as err:
        raise fail(str(err)) from err


@app.command("formats", epilog="Example: altcap data formats")
def list_formats() -> None:
    """List the dataset formats `altcap data import` reads."""
    for name in IMPORT_FORMATS:
        typer.echo(name)


@app.command("import")
@config_command(
    DataImportConfig,
    [
        Flag("format", argument=True),
        Flag("source", argument=True),
        OUT,
        "images_dir",
        "split",
        "caption_field",
        "include_rejected",
        "include_precanned",
        "overwrite",
    ],
    example="altcap data import jsonl src/altcap/sample/manifest.jsonl --out my-data",
)
def import_command(cfg: DataImportConfig) -> None:
    """Import FORMAT SRC into OUT/manifest.jsonl (+ OUT/import_report.json)."""
    from altcap.data.import_common import DataImportError
    from altcap.data.importer import run_data_import

    report = _run_or_fail(run_data_import, cfg, DataImportError)
    counts = report["counts"]
    console.print(
        f"wrote {report['manifest']}: {counts['records']} images, {counts['captions']} captions, "
        f"per split {counts['records_per_split']}"
    )
    noted = {k: v for k, v in counts.items() if k not in ("records", "captions", "records_per_split")}
    if noted:
        console.print(f"noted (details in {cfg.out_dir / 'import_report.json'}): {noted}")


@app.command("check")
@config_command(
    DataCheckConfig,
    [
        Flag("manifest", argument=True),
        OUT,
        "strict",
        "workers",
        Flag("check_images", name="images"),
        "max_caption_chars",
        "near_duplicate_bits",
    ],
    example="altcap data check --out check",
)
def check_command(cfg: DataCheckConfig) -> None:
    """Check a manifest and its images; write OUT/check_report.json and OUT/manifest.clean.jsonl."""
    from altcap.data.check import run_data_check
    from altcap.data.findings import Finding, render_summary
    from altcap.data.manifest import ManifestError

    if cfg.manifest is None:
        console.print("no MANIFEST given: checking the embedded Flickr8k sample")
    report = _run_or_fail(run_data_check, cfg, ManifestError)
    summary = report["summary"]
    render_summary([Finding(**f) for f in report["findings"]], summary, console)
    console.print(
        f"{summary['errors']} errors, {summary['warnings']} warnings, {summary['infos']} infos in "
        f"{summary['seconds']:.1f} s; removed {summary['removed_records']} records and "
        f"{summary['removed_captions']} captions"
    )
    console.print(f"wrote {cfg.out_dir / 'check_report.json'} and {report['clean_manifest']}")
    if cfg.strict and summary["errors"] + summary["warnings"] > 0:
        raise typer.Exit(code=1)


@app.command("split")
@config_command(
    DataSplitConfig,
    [
        Flag("manifest", argument=True),
        OUT,
        "seed",
        "val_fraction",
        "test_fraction",
        "resplit",
        "check_report",
        "overwrite",
    ],
    example="altcap data split src/altcap/sample/manifest.jsonl --resplit --out split",
)
def split_command(cfg: DataSplitConfig) -> None:
    """Give every record a train/val/test split, grouped by image; write OUT/manifest.jsonl."""
    from altcap.data.manifest import ManifestError
    from altcap.data.split import run_data_split

    report = _run_or_fail(run_data_split, cfg, ManifestError)
    per_split = {s: v["records"] for s, v in report["per_split"].items()}
    console.print(
        f"wrote {report['manifest']}: {per_split} (kept {report['kept_existing']}, "
        f"newly assigned {report['newly_assigned']})"
    )
    if report["straddling_groups"]:
        console.print(
            f"[yellow]{len(report['straddling_groups'])} duplicate groups straddle kept splits[/]; "
            "see split_report.json or pass --resplit"
        )
