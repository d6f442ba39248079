"""The CLI, the study server and the report builder start fast on a small box.

The CLI may import config classes (altcap.models.loading has no torch at import time); the study,
analysis and report packages must not touch model code at all.
"""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("altcap.cli", ("torch", "transformers", "gradio")),
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
