"""benchmarks/ is a package of small modules, and every result file it keeps is cited in the docs
by its own name."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MAX_LINES = 300
# A results file reported by docs/benchmarks.md, by the benchmark or the GPU run that wrote it.
RESULT_NAME = re.compile(
    r"`((?:train_throughput|caption_throughput|caption_overlap|profile_\w+|decode_attention)-[^`]+"
    r"|altcap-mini-[^`]+\.(?:json|jsonl|log))`"
)
DELETED_SECTION = "## Earlier design runs"  # lists files deleted on purpose


def read_docs() -> str:
    """docs/*.md, README.md and DEVELOPERS.md: where a result file may be cited."""
    paths = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "DEVELOPERS.md"]
    return "\n".join(path.read_text(encoding="utf-8") for path in paths)


def test_every_result_file_is_cited_by_its_own_name() -> None:
    # By the literal file name, so `grep NAME docs/ README.md DEVELOPERS.md` finds each file's row;
    # a shorthand (`a-{x,y}.json`, `a-*.jsonl`) alone would let a new file ride on an old citation.
    docs = read_docs()
    uncited = [path.name for path in sorted(RESULTS.iterdir()) if path.name not in docs]
    assert not uncited, (
        "benchmarks/results/ files no doc names (add a row to docs/benchmarks.md's "
        f"'Other result files', or summarise them under '{DELETED_SECTION}' and delete them): {uncited}"
    )


def test_every_result_file_docs_report_exists() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    before, _, after = text.partition(DELETED_SECTION)
    reported = before + ("\n## " + after.split("\n## ", 1)[1] if "\n## " in after else "")
    missing = sorted({name for name in RESULT_NAME.findall(reported) if not (RESULTS / name).is_file()})
    assert not missing, f"docs/benchmarks.md reports files missing from benchmarks/results/: {missing}"


def test_every_module_is_listed_once_as_entry_point_or_helper() -> None:
    modules = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py") if path.stem != "__init__")
    assert sorted(benchmarks.ENTRY_POINTS + benchmarks.HELPERS) == modules


@pytest.mark.parametrize("name", benchmarks.ENTRY_POINTS)
def test_entry_point_imports_as_a_package_module_with_main(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.main), f"benchmarks/{name}.py: no main(); `python -m benchmarks.{name}` runs it"


@pytest.mark.parametrize("name", benchmarks.HELPERS)
def test_helper_imports_as_a_package_module(name: str) -> None:
    assert importlib.import_module(f"benchmarks.{name}").__name__ == f"benchmarks.{name}"


def test_no_benchmark_module_is_long_or_imports_by_file_path() -> None:
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: over {MAX_LINES} lines; split it"
        assert "sys.path" not in text and "spec_from_file_location" not in text, (
            f"{path.name}: imports by file path; import through the package (`from benchmarks import ...`)"
        )
