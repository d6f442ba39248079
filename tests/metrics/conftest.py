"""Fixtures of tests/metrics: small manifests and captions files in tmp_path."""

from pathlib import Path

import pytest
from metrics_fixtures import GOOD, WORSE, write_captions, write_manifest


@pytest.fixture
def eval_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "refs": write_manifest(tmp_path / "manifest.jsonl"),
        "good": write_captions(tmp_path / "finetuned.jsonl", GOOD),
        "worse": write_captions(tmp_path / "base.jsonl", WORSE),
    }
