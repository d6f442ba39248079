"""benchmarks/ is a package of small modules, and every result file it keeps is cited in the docs."""

from __future__ import annotations

import fnmatch
import importlib
import re
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MAX_LINES = 300
# A results file reported by docs/benchmarks.md, by the benchmark that wrote it.
RESULT_NAME = re.compile(
    r"`((?:train_throughput|caption_throughput|caption_overlap|profile_\w+|decode_attention)-[^`]+)`"
)


def expand_braces(pattern: str) -> list[str]:
    """`a-{x,y}-b` -> [`a-x-b`, `a-y-b`] (the docs' shorthand for sibling files), recursively."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [name for part in match.group(1).split(",") for name in expand_braces(head + part + tail)]


def read_citations() -> list[str]:
    """Every backticked name or pattern in docs/*.md and README.md, braces expanded."""
    docs = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    texts = [path.read_text(encoding="utf-8") for path in docs]
    quoted = [token for text in texts for token in re.findall(r"`([^`\n]+)`", text)]
    return [Path(name).name for token in quoted for name in expand_braces(token)]


def test_every_result_file_is_cited_in_the_docs() -> None:
    citations = read_citations()
    uncited = [
        path.name
        for path in sorted(RESULTS.iterdir())
        if not any(fnmatch.fnmatchcase(path.name, cited) for cited in citations)
    ]
    assert not uncited, f"benchmarks/results/ files no doc names (cite, or summarise and delete): {uncited}"


def test_every_result_file_docs_report_exists() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    reported = text.split("## Earlier design runs")[0]  # that table lists files deleted on purpose
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
