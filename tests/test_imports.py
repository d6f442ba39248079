"""The study server and report builder must start on a small box: no torch, no model code."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["altcap.cli", "altcap.study", "altcap.report"])
def test_light_modules_do_not_import_torch(module: str) -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({module!r})\n"
        "for info in pkgutil.walk_packages(getattr(pkg, '__path__', []), pkg.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "heavy = [m for m in ('torch', 'transformers', 'altcap.models') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"
