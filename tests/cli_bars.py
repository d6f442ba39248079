"""Reading progress bars out of a command's output: a long stage draws one bar with a rate (#27 item 16)."""

from __future__ import annotations

import re
from typing import Any

# "66173.61img/s", "5.68s/step": a rate with a number (tqdm's "?it/s" placeholder does not count).
RATE = re.compile(r"\d[\d.]*(?:[a-z]+/s|s/[a-z]+)\b")
# "captioning:  40%|████  | 2/5 [..." (known total) or "evaluate: 0step [00:00, ..." (unknown total).
BAR = re.compile(r"^(?P<desc>[^|\[\n]+?):\s+(?:\d+%\||\d+[a-z]* \[)")

# A warning line ("warning: ...", "WARNING: ...") or a Python warning ("UserWarning: ..."), not a
# count in a summary ("0 warnings").
WARNING = re.compile(r"(?im)^\s*warning\b|\w+Warning: ")


def find_bars(text: str) -> dict[str, list[str]]:
    """Stage name (the bar's description up to its first colon) -> every drawn state of its bar."""
    bars: dict[str, list[str]] = {}
    for segment in re.split(r"[\r\n]+", text):
        match = BAR.match(segment.strip())
        if match:
            bars.setdefault(match["desc"].split(":")[0], []).append(segment.strip())
    return bars


def assert_one_bar_with_rate(stderr: str, stage: str) -> None:
    """Exactly one stage's bar was drawn, `stage`'s, and one of its states shows a rate."""
    bars = find_bars(stderr)
    assert list(bars) == [stage], stderr
    assert any(RATE.search(state) for state in bars[stage]), bars[stage]


def assert_quiet(stdout: str, stderr: str) -> None:
    """-q: no bar anywhere, no warning or note, nothing at all on stderr."""
    assert find_bars(stdout + stderr) == {}, stdout + stderr
    assert not WARNING.search(stdout + stderr), stdout + stderr
    assert stderr.strip() == "", stderr


def invoke_quiet(app: Any, args: list[str]) -> Any:
    """`altcap -q ARGS` in this process; the level is then reset, since it is process-wide and
    passed to child processes through the environment (later tests expect the default)."""
    from typer.testing import CliRunner

    from altcap.cli_output import NORMAL, configure_output

    try:
        return CliRunner().invoke(app, ["-q", *args])
    finally:
        configure_output(NORMAL)
