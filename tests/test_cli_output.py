"""Quiet by default: each warning once, no library bars; -v shows more, -q errors only (#27 item 16)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from altcap.cli import app
from altcap.cli_output import (
    NORMAL,
    QUIET,
    VERBOSE,
    VERBOSITY_ENV,
    configure_output,
    hide_child_chatter,
    progress_bar,
    read_inherited_verbosity,
    stage_progress,
)
from cli_bars import assert_one_bar_with_rate, assert_quiet, find_bars, invoke_quiet

runner = CliRunner()

SCRIPT = """
import logging, sys, warnings
from altcap.cli_output import configure_output
configure_output(int(sys.argv[1]))
from tqdm.auto import tqdm
for _ in tqdm(range(3), desc="GGUF-conversion"):  # a library's bar: no disable= given
    pass
for _ in tqdm(range(3), desc="altcap-stage", disable=False):  # altcap's own stage bar
    pass
for _ in range(3):
    logging.getLogger("some.library").warning("deprecated thing")
    warnings.warn("old API", FutureWarning)
logging.getLogger("altcap").info("detail for -v")
logging.getLogger("altcap").error("a real error")
"""


def run_with(verbosity: int) -> str:
    env_keys = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")
    env = {k: v for k, v in __import__("os").environ.items() if k not in env_keys}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(verbosity)], capture_output=True, text=True, env=env, check=True
    )
    return done.stderr


def test_default_is_quiet_each_warning_once_and_only_altcaps_own_bar() -> None:
    err = run_with(0)
    assert "GGUF-conversion" not in err and "altcap-stage" in err
    assert err.count("deprecated thing") == 1 and err.count("old API") == 1
    assert "detail for -v" not in err and "a real error" in err


def test_verbose_shows_more_and_quiet_shows_errors_only() -> None:
    verbose = run_with(1)
    assert "GGUF-conversion" in verbose and "detail for -v" in verbose
    quiet = run_with(-1)
    assert "deprecated thing" not in quiet and "old API" not in quiet and "a real error" in quiet


def test_global_flags_are_listed() -> None:
    help_text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--verbose" in help_text and "--quiet" in help_text


def test_evaluate_says_spice_not_computed_once(monkeypatch, tmp_path: Path) -> None:
    import logging

    def fake_evaluate(cfg):
        logging.getLogger("altcap.metrics.evaluate").warning("SPICE not computed: no CoreNLP jars")
        cfg.out.mkdir(parents=True)
        (cfg.out / "metrics.md").write_text("| metric |\n")
        return {"missing": {"SPICE": "no CoreNLP jars"}}

    monkeypatch.setattr("altcap.metrics.evaluate.run_evaluate", fake_evaluate)
    args = ["evaluate", "--refs", "r.jsonl", "--pred", "p.jsonl", "--out", str(tmp_path / "m")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("no CoreNLP jars") == 1


SAMPLE = Path(__file__).resolve().parents[1] / "src" / "altcap" / "sample" / "manifest.jsonl"


@pytest.fixture
def restore_verbosity() -> Iterator[None]:
    yield
    configure_output(NORMAL)


@pytest.mark.parametrize(("stage", "args"), [("importing", ["data", "import", "jsonl", str(SAMPLE)]),
                                             ("checking images", ["data", "check", str(SAMPLE)])])
def test_data_stages_draw_one_bar_by_default_and_nothing_under_quiet(
    stage: str, args: list[str], tmp_path: Path, restore_verbosity: None
) -> None:
    shown = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert shown.exit_code == 0, shown.output
    assert_one_bar_with_rate(shown.stderr, stage)
    quiet = invoke_quiet(app, [*args, "--out", str(tmp_path / "b")])
    assert quiet.exit_code == 0, quiet.output
    assert_quiet(quiet.stdout, quiet.stderr)
    assert (tmp_path / "b").is_dir()


def test_bars_follow_the_level(restore_verbosity: None, capsys: pytest.CaptureFixture[str]) -> None:
    drawn = {}
    for level in (QUIET, NORMAL, VERBOSE):
        configure_output(level)
        with progress_bar(3, "stage") as stage, progress_bar(3, "phase", detail=True) as phase:
            drawn[level] = [not stage.disable, not phase.disable]
    assert drawn == {QUIET: [False, False], NORMAL: [True, False], VERBOSE: [True, True]}
    with progress_bar(3, "stage", shown=False) as other:  # e.g. a worker process's bar
        assert other.disable


def test_a_stage_of_phases_draws_one_bar_whose_total_grows(capsys: pytest.CaptureFixture[str]) -> None:
    configure_output(NORMAL)
    with stage_progress("evaluate") as progress:
        first = progress.add_task("COCO metrics", total=2)
        progress.advance(first)
        progress.advance(first)
        second = progress.add_task("bootstrap", total=3)
        for _ in range(3):
            progress.advance(second)
        assert (progress.bar.n, progress.bar.total) == (5, 5)
    bars = find_bars(capsys.readouterr().err)
    assert list(bars) == ["evaluate"] and any("evaluate: bootstrap" in s for s in bars["evaluate"])


CHATTY_CHILD = (
    "import sys; print('PTBTokenizer tokenized 12 tokens at 3.0 tokens per second.', file=sys.stderr); "
    "print('a real problem', file=sys.stderr)"
)


@pytest.mark.parametrize("level", [NORMAL, VERBOSE])
def test_child_chatter_is_dropped_and_the_rest_kept(level: int, capfd: pytest.CaptureFixture[str]) -> None:
    configure_output(level)
    with hide_child_chatter(r"^PTBTokenizer tokenized"):
        subprocess.run([sys.executable, "-c", CHATTY_CHILD], check=True)
    err = capfd.readouterr().err
    configure_output(NORMAL)
    assert "a real problem" in err
    assert ("PTBTokenizer" in err) == (level == VERBOSE)


def test_the_launcher_level_reaches_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_output(QUIET)
    assert read_inherited_verbosity() == QUIET  # in the environment accelerate's workers inherit
    monkeypatch.setenv(VERBOSITY_ENV, "loud")
    assert read_inherited_verbosity() == NORMAL
    configure_output(NORMAL)
