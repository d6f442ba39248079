"""The `altcap` entry point builds only the command it runs, with the same help as the whole tree."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from altcap.cli import COMMANDS, GC_THRESHOLDS, app, build_app, named_command

runner = CliRunner()


@pytest.mark.parametrize(
    ("argv", "name"),
    [(["caption", "--images", "x"], "caption"), (["-q", "--verbose", "train", "a.yaml"], "train"),
     (["version"], "version"), (["--help"], None), ([], None), (["captoin"], None), (["-x", "run"], None)],
)
def test_named_command_finds_the_command_after_the_global_flags(argv: list[str], name: str | None) -> None:
    assert named_command(argv) == name


@pytest.mark.parametrize("name", [*COMMANDS, "version"])
def test_a_command_built_alone_has_the_whole_trees_help(name: str) -> None:
    env = {"COLUMNS": "200"}
    alone = runner.invoke(build_app((name,)), [name, "--help"], env=env)
    whole = runner.invoke(app, [name, "--help"], env=env)
    assert alone.exit_code == whole.exit_code == 0, alone.output
    assert alone.output == whole.output


def test_caption_imports_no_other_stages_commands() -> None:
    """#27 item 17: every start of `altcap caption` used to import every stage's commands (analysis,
    pipeline, study, report, numpy), ~0.3 s of CPU on 2 cores."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['altcap', 'caption', '--help']\n"
        "try:\n    runpy.run_module('altcap.cli', run_name='__main__')\nexcept SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "others = ('altcap.analysis', 'altcap.pipeline', 'altcap.study', 'altcap.report', 'altcap.metrics',\n"
        "          'altcap.train', 'altcap.data.commands', 'altcap.infer.demo_ui', 'numpy')\n"
        "print('IMPORTED', ','.join(m for m in sys.modules if m.startswith(others)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Example: altcap caption" in done.stdout
    assert done.stdout.split("IMPORTED ")[-1].strip() == ""


def test_the_entry_point_spares_start_up_and_exit_the_collectors_passes() -> None:
    """#27 item 17: full collections over torch's and transformers' objects cost a warm caption start
    ~0.6 s during its imports and ~1 s at exit, freeing almost nothing."""
    code = (
        "import gc, runpy, sys\n"
        "sys.argv = ['altcap', 'version']\n"
        "try:\n    runpy.run_module('altcap.cli', run_name='__main__')\nexcept SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "print('GC', gc.get_threshold(), gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("GC ")[-1].strip() == f"{GC_THRESHOLDS} True"
    assert GC_THRESHOLDS[0] > 700  # Python's default


@pytest.mark.parametrize(("given", "kept"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_passively_unless_the_user_says_otherwise(given: str | None, kept: str) -> None:
    """#27 item 17: spinning OpenMP threads made a warm caption on a busy 2-core box ~10x slower."""
    code = (
        "import os, runpy, sys\n"
        "sys.argv = ['altcap', 'version']\n"
        "try:\n    runpy.run_module('altcap.cli', run_name='__main__')\nexcept SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "print('POLICY', os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split("POLICY ")[-1].strip() == f"{kept} False"  # set before torch loads OpenMP
