"""docs/architecture.md names every package and top-level module of src/altcap/."""

from pathlib import Path

import altcap

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def list_code_units(src: Path) -> list[str]:
    """Each package (a folder with __init__.py) as 'name/' and each top-level module as 'name.py'."""
    folders = [p.parent for p in src.rglob("__init__.py") if p.parent != src]
    packages = [f"{folder.relative_to(src).as_posix()}/" for folder in folders]
    modules = [p.name for p in src.glob("*.py") if p.name != "__init__.py"]
    return sorted(packages + modules)


def test_architecture_doc_names_every_package_and_module() -> None:
    units = list_code_units(Path(altcap.__file__).parent)
    assert {"data/", "study/routes/", "cli.py", "config.py"} <= set(units)
    text = DOC.read_text(encoding="utf-8")
    missing = [unit for unit in units if f"`{unit}`" not in text]
    assert missing == [], f"docs/architecture.md does not name {missing}; add them to its table"
