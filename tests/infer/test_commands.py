"""`altcap caption` as the user sees it: one bar with a rate by default, nothing under -q (#27 item 16),
only the libraries it uses (item 17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from altcap.cli import app
from cli_bars import assert_one_bar_with_rate, assert_quiet, invoke_quiet


def caption_args(model: Path, manifest: Path, out: Path) -> list[str]:
    return ["caption", "--model-id", str(model), "--manifest", str(manifest), "--split", "test",
            "--out", str(out), "--num-beams", "1", "--max-new-tokens", "3", "--min-new-tokens", "1",
            "--device", "cpu"]


def test_caption_draws_one_bar_by_default_and_none_under_quiet(tiny_blip2, manifest, tmp_path) -> None:
    shown = CliRunner().invoke(app, caption_args(tiny_blip2, manifest, tmp_path / "a.jsonl"))
    assert shown.exit_code == 0, shown.output
    assert_one_bar_with_rate(shown.stderr, "captioning")
    quiet = invoke_quiet(app, caption_args(tiny_blip2, manifest, tmp_path / "b.jsonl"))
    assert quiet.exit_code == 0, quiet.output
    assert_quiet(quiet.stdout, quiet.stderr)
    assert (tmp_path / "b.jsonl").read_text().count("\n") == 5  # quiet, not idle


def test_batches_group_images_by_their_upright_shape(tmp_path: Path) -> None:
    """A phone photo stored sideways (EXIF orientation 6) is portrait once loaded: it batches with
    the portrait photos, not the landscape ones (#27: every reader goes through the one loader's rules)."""
    from PIL import Image

    from altcap.infer.batches import CaptionItem
    from altcap.infer.caption import order_for_throughput

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20)).save(tmp_path / "a-wide.jpg")
    Image.new("RGB", (40, 20)).save(tmp_path / "b-sideways.jpg", exif=exif)
    Image.new("RGB", (20, 40)).save(tmp_path / "c-tall.jpg")
    items = [CaptionItem(p.name, p) for p in sorted(tmp_path.glob("*.jpg"))]
    ordered = [item.key for item in order_for_throughput(items)]
    assert ordered == ["b-sideways.jpg", "c-tall.jpg", "a-wide.jpg"]


# Libraries a caption of altcap-mini never needs; accelerate and scipy are absent from the list
# because transformers itself imports them whenever it loads a model.
NOT_FOR_CAPTIONS = ("peft", "spacy", "matplotlib", "weasyprint", "sklearn", "pandas", "sentence_transformers",
                    "pycocoevalcap", "statsmodels", "fastapi", "sqlalchemy", "gradio", "gguf")
RUN_CLI = (
    "import runpy, sys\n"
    "sys.argv = ['altcap', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('altcap.cli', run_name='__main__')\nexcept SystemExit as done:\n"
    "    assert not done.code, done.code\n"
    "print('IMPORTED', ','.join(m for m in {names!r} if m in sys.modules))\n"
)


@pytest.mark.slow
def test_a_caption_imports_only_what_it_uses(tmp_path: Path) -> None:
    """#27 item 17: `altcap caption` with altcap-mini loads no training, report or evaluation library
    (each costs start-up time); a warm start's remaining cost is torch and transformers themselves."""
    from PIL import Image

    from altcap.models.tiny import build_tiny_altcap_mini

    model = build_tiny_altcap_mini(tmp_path / "mini")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "images" / "red.jpg")
    args = ["caption", "--model-id", str(model), "--images", str(tmp_path / "images"),
            "--out", str(tmp_path / "c.jsonl"), "--max-new-tokens", "3", "--min-new-tokens", "1"]
    code = RUN_CLI.format(names=NOT_FOR_CAPTIONS)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "c.jsonl").is_file()
    assert "IMPORTED" in done.stdout and done.stdout.split("IMPORTED ")[-1].strip() == ""
