import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from altcap.train import logs
from altcap.train.logs import check_tracker_available, read_log_rows, truncate_log
from altcap.train.plots import plot_loss_curves


def test_truncate_log_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "train_log.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6)))
    truncate_log(path, 3)
    assert [r["step"] for r in read_log_rows(path)] == [1, 2, 3]


def test_missing_tracker_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        logs.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real_find_spec(name)
    )
    message = check_tracker_available("mlflow")
    assert message == (
        "report_to='mlflow' but the 'mlflow' package is not installed; "
        "run `pip install mlflow` or set report_to=tensorboard / none"
    )
    assert check_tracker_available("none") is None
    assert check_tracker_available("tensorboard") is None


def test_loss_curves_png_with_missing_validation(tmp_path: Path) -> None:
    path = plot_loss_curves([3.0, 2.0, 1.5], [2.8, None, 1.9], tmp_path / "loss_curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (600, 400)
