"""No module outside `src/altcap/models/` names a model family: the rest of the code asks the family
interface (`ModelFamily` and its capabilities), so adding a family never touches train/, infer/ ...

Docstrings and comments may mention families (they explain measurements); identifiers, imports and
string constants may not, except the help texts and default ids whitelisted below with a reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import altcap

SRC = Path(altcap.__file__).resolve().parent
FAMILY_WORDS = {"blip", "blip2", "instructblip", "llava", "qformer", "t5", "opt", "smollm", "smollm2",
                "efficientnet", "flan", "vicuna"}
FAMILY_TEXT = re.compile(
    r"(?i)\b(blip-?2?|instructblip|llava(?:[-_]next)?|q-?former|flan-t5|t5-\w+|opt-\d|smollm2?|"
    r"altcap[-_]mini|efficientnet)\b"
)
# Modules that hold one family's code; importing them from outside models/ is a family import.
FAMILY_MODULES = ("altcap.models.families", "altcap.models.query_tokens", "altcap.models.mini_",
                  "altcap.models.efficientnet_lite", "altcap.models.graphed_decoding")
# Keyword arguments whose string values are help text shown to users (pydantic / typer).
HELP_KEYWORDS = {"description", "help", "epilog"}
ALLOWED = {
    # (file relative to src/altcap, identifier or string): why it may name a family.
    ("pipeline/run.py", "altcap-mini"): "the pipeline's default model id (help/default ids may name models)",
    ("train/config.py", "include_qformer"): "a public config key users set in YAML; its check goes through "
    "the family's FrozenPartLora capability",
    ("train/validate.py", "include_qformer"): "reads the public config key above",
    ("train/config.py", "Q-Former"): "the message explains what the public key include_qformer trains",
}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
    return nodes


def _help_nodes(tree: ast.AST) -> set[int]:
    return {id(sub) for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg in HELP_KEYWORDS
            for sub in ast.walk(node.value)}


def _identifiers(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword) and node.arg:
        return [node.arg]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    return []


def find_family_mentions(path: Path, root: Path = SRC) -> list[str]:
    """Identifiers, imports and strings in `path` that name a family, as 'file:line value'."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _docstring_nodes(tree) | _help_nodes(tree)
    relative = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(tree):
        values = []
        for name in _identifiers(node):
            parts = set(re.split(r"[_.]", name.lower()))
            if parts & FAMILY_WORDS or "altcap_mini" in name.lower():
                values.append(name)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(FAMILY_MODULES):
            values.append(node.module or "")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            values += [m.group(0) for m in FAMILY_TEXT.finditer(node.value)]
        found += [f"{relative}:{node.lineno} {v}" for v in values if (relative, v) not in ALLOWED]
    return found


def test_no_module_outside_models_names_a_family() -> None:
    files = [p for p in SRC.rglob("*.py") if "models" not in p.relative_to(SRC).parts[:1]]
    assert len(files) > 50
    mentions = [m for path in sorted(files) for m in find_family_mentions(path)]
    assert mentions == []


def test_the_scan_finds_what_the_refactor_moved_out(tmp_path: Path) -> None:
    # Each line is a kind of leak the refactor removed; the test above proves nothing unless all are caught.
    probe = tmp_path / "infer" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(
        '"""Docstrings may say BLIP-2."""\n'
        'GRAPHED_FAMILIES = ("blip2", "instructblip")\n'
        "from altcap.models.families.blip2 import load\n"
        "QFORMER_LORA_TARGETS = ()\n"
        'x = Field(default=1, description="BLIP-2 only")\n',
        encoding="utf-8",
    )
    found = sorted(find_family_mentions(probe, tmp_path))
    assert found == ["infer/probe.py:2 blip2", "infer/probe.py:2 instructblip",
                     "infer/probe.py:3 altcap.models.families.blip2", "infer/probe.py:4 QFORMER_LORA_TARGETS"]
