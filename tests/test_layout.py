"""Test modules live in plain folders (rootdir imports), so their basenames must be unique."""

from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique() -> None:
    tests = Path(__file__).resolve().parent
    names = Counter(p.name for p in tests.rglob("test_*.py") if not (p.parent / "__init__.py").is_file())
    assert [name for name, count in names.items() if count > 1] == []
