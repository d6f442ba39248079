"""The fast test lane stays what the docs say: `slow` means over ~5 s, and README names the lane."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST_LANE = 'python -m pytest -m "not slow"'
SLOW_MARKER = "slow: takes more than ~5 s on the 2-core CPU machine"


def read_markers() -> dict[str, str]:
    """pytest's registered markers from pyproject.toml: name -> description."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    markers = config["tool"]["pytest"]["ini_options"]["markers"]
    return dict(marker.split(": ", 1) for marker in markers)


def test_slow_marker_means_over_five_seconds_and_names_the_fast_lane() -> None:
    description = read_markers()["slow"]
    assert f"slow: {description}".startswith(SLOW_MARKER)
    assert FAST_LANE in description


def test_readme_development_section_names_the_fast_lane_and_the_full_run() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n## Development\n" in readme, "README.md: no '## Development' section"
    section = readme.split("\n## Development\n", 1)[1].split("\n## ", 1)[0]
    commands = [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]
    assert commands == [FAST_LANE]
    assert "`.ci/run`" in section and "slow" in section


def test_developers_guide_names_the_fast_lane() -> None:
    assert FAST_LANE in (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")


def test_ci_runs_every_lane() -> None:
    # CI must not filter by marker: the slow tests run there or nowhere.
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pytest_options = re.findall(r"python -m pytest([^\n&|;]*)", ci)
    assert pytest_options and all(
        " -m " not in options and " -k " not in options for options in pytest_options
    ), pytest_options


def test_tests_run_torch_on_the_threads_conftest_sets() -> None:
    # tests/conftest.py sets OMP_NUM_THREADS=1 unless the caller set it: two threads on the tiny
    # models made the fast lane twice as slow on the busy 2-core box.
    import torch

    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])
