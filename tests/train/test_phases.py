import re
import time

import pytest

from altcap.train.phases import PhaseTimer


def test_phases_add_up_in_run_order_and_read_as_one_line() -> None:
    timer = PhaseTimer()
    with timer.phase("validate"):
        time.sleep(0.01)
    with timer.phase("fit"):
        time.sleep(0.02)
    with pytest.raises(RuntimeError), timer.phase("validate"):  # a failing phase still counts
        time.sleep(0.01)
        raise RuntimeError("boom")
    assert list(timer.rounded()) == ["validate", "fit"]
    assert timer.seconds["validate"] >= 0.02 and timer.seconds["fit"] >= 0.02
    assert all(value == round(value, 3) for value in timer.rounded().values())
    total = sum(timer.seconds.values())
    expected = rf"time: validate \d+\.\d s, fit \d+\.\d s \(phases total {total:.1f} s\)"
    assert re.fullmatch(expected, timer.describe())


def test_parts_of_a_phase_are_kept_but_counted_once_in_the_total() -> None:
    timer = PhaseTimer()
    with timer.phase("cache_encode"):
        with timer.phase("cache_encode.first_batch"):
            time.sleep(0.02)
        time.sleep(0.01)
    assert list(timer.rounded()) == ["cache_encode.first_batch", "cache_encode"]
    assert timer.seconds["cache_encode"] >= timer.seconds["cache_encode.first_batch"] >= 0.02
    assert timer.describe().endswith(f"(phases total {timer.seconds['cache_encode']:.1f} s)")
