"""Quiet by default: each warning once, no library bars; -v shows more, -q errors only (#27 item 16)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from altcap.cli import app

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
