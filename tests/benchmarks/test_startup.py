"""The start-up benchmark's bookkeeping (the timed runs themselves need the packaged model)."""

from __future__ import annotations

from benchmarks.startup import PHASES_SCRIPT, median_phases


def test_median_phases_keeps_the_order_and_takes_each_median() -> None:
    runs = [{"b": {"cpu_s": 1.0, "wall_s": 2.0}, "a": {"cpu_s": 5.0, "wall_s": 5.0}},
            {"b": {"cpu_s": 3.0, "wall_s": 1.0}, "a": {"cpu_s": 4.0, "wall_s": 9.0}},
            {"b": {"cpu_s": 2.0, "wall_s": 7.0}, "a": {"cpu_s": 6.0, "wall_s": 1.0}}]
    assert median_phases(runs) == {"b": {"cpu_s": 2.0, "wall_s": 2.0}, "a": {"cpu_s": 5.0, "wall_s": 5.0}}
    assert list(median_phases(runs)) == ["b", "a"]


def test_the_phase_script_is_valid_python_that_times_two_captions() -> None:
    compile(PHASES_SCRIPT, "<phases>", "exec")
    assert PHASES_SCRIPT.count("mark(") >= 7 and "same caption again" in PHASES_SCRIPT
