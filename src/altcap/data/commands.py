"""`altcap data ...` commands. Thin: parse flags, resolve the config, call `run_<stage>`.

Heavy imports (Pillow, numpy, imagehash) happen inside the commands so `altcap --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from altcap.cli_options import ConfigPath, SetOptions, fail, resolve_config
from altcap.data.configs import IMPORT_FORMATS, DataCheckConfig, DataImportConfig, DataSplitConfig
from altcap.data.import_columns import describe_columns

app = typer.Typer(no_args_is_help=True, help="Import, check and split captioning datasets.")
console = Console()

OutDir = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")]
Overwrite = Annotated[
    bool | None, typer.Option("--overwrite/--no-overwrite", help="Replace OUT/manifest.jsonl.")
]
# Parameters named otherwise than the config field they set; every other one is named after its field.
_RENAMED_FLAGS = {"out": "out_dir"}


def _collect_flags(params: dict[str, Any]) -> dict[str, Any]:
    """A command's parameters (its `locals()` on entry) as config flags: field -> value, None = not given.

    Derived rather than retyped per command, since the names already match the fields
    (tests/data/test_commands.py keeps them in sync).
    """
    return {_RENAMED_FLAGS.get(k, k): v for k, v in params.items() if k not in ("config", "set_")}


def _run_or_fail(run: Callable[[Any], dict], cfg: Any, error_type: type[Exception]) -> dict:
    """`run(cfg)`; the stage's bad-input error becomes a clean CLI error (exit 2, no traceback)."""
    try:
        return run(cfg)
    except error_type as err:
        raise fail(str(err)) from err


@app.command("formats")
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
def import_command(
    format: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(IMPORT_FORMATS)}.")] = None,
    source: Annotated[Path | None, typer.Argument(help="Dataset folder or annotation file.")] = None,
    out: OutDir = None,
    images_dir: Annotated[Path | None, typer.Option(help="Folder image names are relative to.")] = None,
    split: Annotated[str | None, typer.Option(help="Split for every record of a one-split file.")] = None,
    caption_field: Annotated[str | None, typer.Option(help="csv/jsonl/hf column with the caption.")] = None,
    include_rejected: Annotated[bool | None, typer.Option("--include-rejected/--no-include-rejected")] = None,
    include_precanned: Annotated[
        bool | None, typer.Option("--include-precanned/--no-include-precanned")
    ] = None,
    overwrite: Overwrite = None,
    config: ConfigPath = None,
    set_: SetOptions = None,
) -> None:
    """Import FORMAT SRC into OUT/manifest.jsonl (+ OUT/import_report.json)."""
    cfg = resolve_config(DataImportConfig, config, _collect_flags(locals()), set_)
    from altcap.data.import_common import DataImportError
    from altcap.data.importer import run_data_import

    report = _run_or_fail(run_data_import, cfg, DataImportError)
    counts = report["counts"]
    console.print(
        f"wrote {report['manifest']}: {counts['records']} images, {counts['captions']} captions, "
        f"per split {counts['records_per_split']}"
    )
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    noted = {k: v for k, v in counts.items() if k not in ("records", "captions", "records_per_split")}
    if noted:
        console.print(f"noted (details in {cfg.out_dir / 'import_report.json'}): {noted}")


@app.command("check")
def check_command(
    manifest: Annotated[
        Path | None, typer.Argument(help="Manifest to check; none = the embedded sample.")
    ] = None,
    out: OutDir = None,
    strict: Annotated[
        bool | None, typer.Option("--strict/--no-strict", help="Exit 1 on any warning/error.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes decoding images.")] = None,
    check_images: Annotated[
        bool | None, typer.Option("--images/--no-images", help="Decode every image.")
    ] = None,
    max_caption_chars: Annotated[int | None, typer.Option(help="Warn about longer captions.")] = None,
    near_duplicate_bits: Annotated[
        int | None, typer.Option(help="Perceptual-hash distance; 0 = off.")
    ] = None,
    config: ConfigPath = None,
    set_: SetOptions = None,
) -> None:
    """Check a manifest and its images; write OUT/check_report.json and OUT/manifest.clean.jsonl."""
    cfg = resolve_config(DataCheckConfig, config, _collect_flags(locals()), set_)
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
def split_command(
    manifest: Annotated[Path | None, typer.Argument(help="Manifest to split.")] = None,
    out: OutDir = None,
    seed: Annotated[int | None, typer.Option(help="Shuffle seed.")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Share of newly split images for val.")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="Share of newly split images for test.")] = None,
    resplit: Annotated[
        bool | None, typer.Option("--resplit/--keep-splits", help="Ignore existing splits.")
    ] = None,
    check_report: Annotated[
        Path | None, typer.Option(help="check_report.json: keep duplicates together.")
    ] = None,
    overwrite: Overwrite = None,
    config: ConfigPath = None,
    set_: SetOptions = None,
) -> None:
    """Give every record a train/val/test split, grouped by image; write OUT/manifest.jsonl."""
    cfg = resolve_config(DataSplitConfig, config, _collect_flags(locals()), set_)
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
