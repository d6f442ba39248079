"""`altcap caption` as the user sees it: one bar with a rate by default, nothing under -q (#27 item 16)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from altcap.cli import app
from cli_bars import assert_one_bar_with_rate, assert_quiet


def caption_args(model: Path, manifest: Path, out: Path) -> list[str]:
    return ["caption", "--model-id", str(model), "--manifest", str(manifest), "--split", "test",
            "--out", str(out), "--num-beams", "1", "--max-new-tokens", "3", "--min-new-tokens", "1",
            "--device", "cpu"]


def test_caption_draws_one_bar_by_default_and_none_under_quiet(tiny_blip2, manifest, tmp_path) -> None:
    shown = CliRunner().invoke(app, caption_args(tiny_blip2, manifest, tmp_path / "a.jsonl"))
    assert shown.exit_code == 0, shown.output
    assert_one_bar_with_rate(shown.stderr, "captioning")
    quiet = CliRunner().invoke(app, ["-q", *caption_args(tiny_blip2, manifest, tmp_path / "b.jsonl")])
    assert quiet.exit_code == 0, quiet.output
    assert_quiet(quiet.stdout, quiet.stderr)
    assert (tmp_path / "b.jsonl").read_text().count("\n") == 5  # quiet, not idle
