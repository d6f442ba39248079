"""`altcap data ...` commands. Thin: parse flags, resolve the config, call `run_<stage>`.

Heavy imports (Pillow, numpy, imagehash) happen inside the commands so `altcap --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from altcap.cli_options import Flag, ForceOption, config_command, fail, refuse_to_overwrite
from altcap.cli_output import notes_shown
from altcap.data.configs import IMPORT_FORMATS, DataCheckConfig, DataImportConfig, DataSplitConfig
from altcap.data.import_columns import describe_columns

app = typer.Typer(no_args_is_help=True, help="Import, check and split captioning datasets.")
console = Console()

OUT = Flag("out_dir", name="out", short="-o")
CHECK_OUTPUTS = ["check_report.json", "manifest.clean.jsonl"]


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


IMPORT_HELP = (
    "Import FORMAT SRC into OUT/manifest.jsonl (+ OUT/import_report.json).\n\n"
    "csv and jsonl columns (a CSV may be UTF-8 with or without BOM or Windows-1252, with , ; or tab "
    "separators and quoted line breaks):\n\n" + "\n\n".join(describe_columns().splitlines())
)


@app.command("import", help=IMPORT_HELP)
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
    # -q: errors only (the warnings are in import_report.json too)
    warnings = report["warnings"] if notes_shown() else []
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    noted = {k: v for k, v in counts.items() if k not in ("records", "captions", "records_per_split")}
    if noted and notes_shown():
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
def check_command(cfg: DataCheckConfig, force: ForceOption = False) -> None:
    """Check a manifest and its images; write OUT/check_report.json and OUT/manifest.clean.jsonl.

    Exit codes: 0 = nothing dropped; 1 = records or captions dropped (the clean manifest is still
    written), or with --strict any warning; 2 = bad usage or unreadable input (nothing written).
    An earlier check in OUT is kept unless --force.
    """
    from altcap.data.check import run_data_check
    from altcap.data.findings import Finding, render_summary
    from altcap.data.manifest import ManifestError

    refuse_to_overwrite(cfg.out_dir, CHECK_OUTPUTS, force)
    if cfg.manifest is None and notes_shown():
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
    raise typer.Exit(code=check_exit_code(summary, cfg.strict))


def check_exit_code(summary: dict, strict: bool) -> int:
    """`data check`'s exit code: 1 when anything was dropped (or, strict, any warning), else 0."""
    dropped = summary["removed_records"] + summary["removed_captions"] > 0
    return 1 if dropped or (strict and summary["errors"] + summary["warnings"] > 0) else 0


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
    if report["straddling_groups"] and notes_shown():
        console.print(
            f"[yellow]{len(report['straddling_groups'])} duplicate groups straddle kept splits[/]; "
            "see split_report.json or pass --resplit"
        )
