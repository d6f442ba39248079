"""Imports follow the house rules: stage order, no circles, and light packages that start fast.

The CLI may import config classes (altcap.models.loading has no torch at import time); the study,
analysis and report packages must not touch model code at all. The stage order and the no-circle
rule are import-linter contracts in pyproject.toml; these tests run them.
"""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Slow to import, needed by a few commands only (the caption path's check: tests/infer/test_commands.py).
HEAVY_LIBRARIES = ("peft", "accelerate", "spacy", "matplotlib", "weasyprint", "sklearn", "scipy", "pandas",
                   "sentence_transformers", "pycocoevalcap", "statsmodels", "fastapi", "sqlalchemy")


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # Every command's start pays for what altcap.cli imports (#27 item 17): no model or report
        # library until a command needs it.
        ("altcap.cli", ("torch", "transformers", "gradio", *HEAVY_LIBRARIES)),
        ("altcap.study", ("torch", "transformers", "altcap.models")),
        ("altcap.analysis", ("torch", "transformers", "altcap.models")),
        ("altcap.report", ("torch", "transformers", "altcap.models")),
    ],
)
def test_light_modules_do_not_import_heavy_ones(module: str, forbidden: tuple[str, ...]) -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({module!r})\n"
        "for info in pkgutil.walk_packages(getattr(pkg, '__path__', []), pkg.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        f"heavy = [m for m in {forbidden!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"


def run_import_linter(cwd: Path, pythonpath: Path, config: Path) -> subprocess.CompletedProcess:
    """Run import-linter's contracts from `config` on the package found first on `pythonpath`."""
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))\n"
    )
    paths = [str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_import_contracts_are_kept() -> None:
    """Stage order, no model code in study/analysis/report, report never imports study, no circles."""
    out = run_import_linter(REPO, REPO / "src", REPO / "pyproject.toml")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in out.stdout


@pytest.mark.parametrize(
    "hidden_import",
    [
        "def load():\n    from toypkg import b\n    return b\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toypkg import b\n",
    ],
    ids=["function-local", "type-checking"],
)
def test_contracts_see_hidden_circles(tmp_path: Path, hidden_import: str) -> None:
    """With the project's import-linter settings, function-local and TYPE_CHECKING imports count."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    acyclic = [c for c in project["contracts"] if c["type"] == "acyclic_siblings"]
    assert [c["ancestors"] for c in acyclic] == [["altcap"]]
    package = tmp_path / "toypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(hidden_import)
    (package / "b.py").write_text("from toypkg import a\n")
    settings = {k: v for k, v in project.items() if k not in ("contracts", "root_package")}
    lines = ["[tool.importlinter]", 'root_package = "toypkg"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["[[tool.importlinter.contracts]]", 'name = "toy"', 'type = "acyclic_siblings"']
    lines += ['ancestors = ["toypkg"]']
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    out = run_import_linter(tmp_path, tmp_path, tmp_path / "pyproject.toml")
    assert out.returncode == 1, out.stdout
    assert "No cycles are allowed in toypkg" in out.stdout
