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


def test_rows_record_how_long_the_loop_waited_for_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import time
    from types import SimpleNamespace

    import torch

    from altcap.train.logs import TrainLogger
    from altcap.train.loop import timed_batches

    accelerator = SimpleNamespace(
        is_main_process=True, num_processes=1, device=torch.device("cpu"), log=lambda *a, **k: None
    )
    logger = TrainLogger(accelerator, tmp_path, total_steps=3, start_step=0, num_workers=2)

    def slow_loader():
        for index in range(3):
            time.sleep(0.05)
            yield index

    assert list(timed_batches(slow_loader(), logger)) == [0, 1, 2]
    with caplog.at_level("WARNING", logger="altcap.train.logs"):
        logger.write_row({"step": 3, "loss": 1.0})
        for _ in timed_batches(slow_loader(), logger):
            pass
        logger.write_row({"step": 4, "loss": 1.0})
    first, second = read_log_rows(tmp_path / "train_log.jsonl")
    assert 0.15 <= first["data_wait_s"] < 5 and 0.15 <= second["data_wait_s"] < 5  # counted per row
    # Nearly all of the time went to waiting: the user is told once what to change.
    warnings = [r.getMessage() for r in caplog.records if "waited for data" in r.getMessage()]
    assert len(warnings) == 1 and "raise num_workers (now 2)" in warnings[0]


def test_rows_record_garbage_collection_pauses(tmp_path: Path) -> None:
    import gc
    from types import SimpleNamespace

    import torch

    from altcap.train.logs import TrainLogger

    accelerator = SimpleNamespace(
        is_main_process=True, num_processes=1, device=torch.device("cpu"), log=lambda *a, **k: None,
        end_training=lambda: None,
    )  # fmt: skip
    logger = TrainLogger(accelerator, tmp_path, total_steps=2, start_step=0)
    garbage = [[] for _ in range(200_000)]
    for item in garbage:
        item.append(item)  # reference cycles: only the collector frees them
    del garbage
    gc.collect()
    logger.write_row({"step": 1, "loss": 1.0})
    logger.write_row({"step": 2, "loss": 1.0})
    logger.close()
    first, second = read_log_rows(tmp_path / "train_log.jsonl")
    assert first["gc_s"] > 0 and second["gc_s"] == 0  # counted in the row it happened in, then reset
    gc.collect()
    assert logger._time_gc not in gc.callbacks  # closing the log stops the timing
