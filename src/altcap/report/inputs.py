"""Reading the memo's input files (analysis.json, metrics.json, power.json, a training run's JSON).

One reader for every report module, so each missing or broken file gets the same kind of error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON file; errors name the file and the command that writes it.

    Args:
        path: the file to read.
        what: what the file is and which command writes it, quoted in the error.

    Returns:
        The parsed JSON object.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); regenerate the {what}") from err
