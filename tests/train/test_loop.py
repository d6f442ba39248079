import gc
import json
from pathlib import Path

import pytest
from train_fixtures import make_config, read_log, write_manifest

from altcap.train.run import run_train


@pytest.mark.slow
def test_early_stopping_ends_the_run_and_keeps_the_best_adapter(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=2)
    out = tmp_path / "run"
    # min_delta is far above any possible gain, so only the first evaluation counts as an improvement.
    sets = ("epochs=10", "grad_accum_steps=1", "early_stopping.patience=2", "early_stopping.min_delta=100")
    run_train(make_config(tiny_model("blip"), manifest, out, *sets))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["stopped_early"] is True
    assert provenance["final_step"] == 6  # 2 steps per epoch, evaluations after epochs 1, 2 and 3
    assert provenance["best_val_loss"] == read_log(out)[1]["val_loss"]
    assert (out / "best" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_accumulation_steps_count_optimizer_steps(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=6, n_val=0)
    out = tmp_path / "run"
    # 6 examples / batch 2 = 3 micro-batches per epoch; accumulation 2 -> steps of 2 and 1 micro-batches.
    run_train(make_config(tiny_model("blip"), manifest, out, "epochs=2", "grad_accum_steps=2"))
    rows = read_log(out)
    assert [(r["step"], r["epoch"]) for r in rows] == [(1, 0), (2, 0), (3, 1), (4, 1)]
    assert rows[0]["lr"] == 0.0 and rows[1]["lr"] > rows[-1]["lr"]  # 1 warm-up step, then cosine decay
    assert gc.get_freeze_count() == 0  # objects frozen for the run are collectable again


@pytest.mark.slow
def test_early_stopping_with_loader_workers_drops_the_prefetched_epoch(tiny_model, tmp_path: Path) -> None:
    # With workers, each epoch's first batch is fetched during the last step of the one before;
    # early stopping then ends the run with a fetched epoch that never runs.
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=2)
    sets = ("epochs=10", "grad_accum_steps=1", "early_stopping.patience=2", "early_stopping.min_delta=100")
    logs = {}
    for workers in (0, 1):
        out = tmp_path / f"run-{workers}"
        run_train(make_config(tiny_model("blip"), manifest, out, *sets, f"num_workers={workers}"))
        assert json.loads((out / "provenance.json").read_text())["final_step"] == 6
        logs[workers] = read_log(out)
    assert [r["epoch"] for r in logs[1]] == [r["epoch"] for r in logs[0]]
    assert [r["loss"] for r in logs[1]] == pytest.approx([r["loss"] for r in logs[0]], abs=1e-6)


def test_freezing_for_the_run_collects_young_cycles_first() -> None:
    import weakref

    from altcap.train.loop import freeze_long_lived_objects

    class Node:
        pass

    node = Node()
    node.self = node  # a reference cycle: only the collector frees it
    gone = weakref.ref(node)
    del node
    try:
        freeze_long_lived_objects()
        assert gone() is None  # young garbage is not frozen with the run's objects
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
