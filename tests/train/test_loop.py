import json
from pathlib import Path

from train_fixtures import make_config, read_log, write_manifest

from altcap.train.run import run_train


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


def test_accumulation_steps_count_optimizer_steps(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=6, n_val=0)
    out = tmp_path / "run"
    # 6 examples / batch 2 = 3 micro-batches per epoch; accumulation 2 -> steps of 2 and 1 micro-batches.
    run_train(make_config(tiny_model("blip"), manifest, out, "epochs=2", "grad_accum_steps=2"))
    rows = read_log(out)
    assert [(r["step"], r["epoch"]) for r in rows] == [(1, 0), (2, 0), (3, 1), (4, 1)]
    assert rows[0]["lr"] == 0.0 and rows[1]["lr"] > rows[-1]["lr"]  # 1 warm-up step, then cosine decay
