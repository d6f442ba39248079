from pathlib import Path

from pydantic import BaseModel

from altcap import cli_output
from altcap.pipeline.stages import Stage, run_stages


class Cfg(BaseModel):
    factor: int = 2


def make_stages(tmp_path: Path, calls: list[str], factor: int) -> list[Stage]:
    source, middle, final = tmp_path / "in.txt", tmp_path / "mid.txt", tmp_path / "out.txt"

    def double() -> None:
        calls.append("double")
        middle.write_text(str(int(source.read_text()) * factor))

    def copy() -> None:
        calls.append("copy")
        final.write_text(middle.read_text())

    return [
        Stage("double", Cfg(factor=factor), [source], [middle], double),
        Stage("copy", Cfg(), [middle], [final], copy),
    ]


def test_rerun_skips_current_stages_and_reruns_changed_ones(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("3")
    state = tmp_path / ".stages"
    calls: list[str] = []
    first = run_stages(make_stages(tmp_path, calls, 2), state)
    assert [r.status for r in first] == ["ran", "ran"]
    assert (tmp_path / "out.txt").read_text() == "6"

    second = run_stages(make_stages(tmp_path, calls, 2), state)
    assert [r.status for r in second] == ["skipped", "skipped"]

    # A changed config reruns its stage and the stage that reads what it rewrote.
    run_stages(make_stages(tmp_path, calls, 5), state)
    assert (tmp_path / "out.txt").read_text() == "15"
    assert calls == ["double", "copy", "double", "copy"]


def test_missing_output_or_changed_input_reruns(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("1")
    state = tmp_path / ".stages"
    calls: list[str] = []
    run_stages(make_stages(tmp_path, calls, 2), state)
    (tmp_path / "out.txt").unlink()
    run_stages(make_stages(tmp_path, calls, 2), state)
    assert calls == ["double", "copy", "copy"]
    (tmp_path / "in.txt").write_text("4")
    run_stages(make_stages(tmp_path, calls, 2), state)
    assert (tmp_path / "out.txt").read_text() == "8"


def test_quiet_runs_print_no_stage_headers(tmp_path: Path, monkeypatch) -> None:
    import io

    from rich.console import Console

    (tmp_path / "in.txt").write_text("3")
    shown = Console(file=io.StringIO(), width=80)
    monkeypatch.setitem(cli_output._state, "verbosity", cli_output.QUIET)
    for _ in range(2):  # the run, then the rerun that skips
        run_stages(make_stages(tmp_path, [], 2), tmp_path / ".stages", shown)
    assert shown.file.getvalue() == ""
    monkeypatch.setitem(cli_output._state, "verbosity", cli_output.NORMAL)
    run_stages(make_stages(tmp_path, [], 2), tmp_path / ".stages", shown)
    assert "[1/2] double: up to date, skipped" in shown.file.getvalue()
