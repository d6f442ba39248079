from pathlib import Path

import pytest
import torch
from PIL import Image
from train_fixtures import make_config, read_log, write_manifest

from altcap.train.cache import CollateWithFeatures, FeatureCache, FeatureEncoder, hash_frozen_weights
from altcap.train.data import Example, load_rgb
from altcap.train.phases import PhaseTimer
from altcap.train.run import run_train


@pytest.mark.slow
@pytest.mark.parametrize(("family", "variant"), [("blip2", "opt"), ("blip", None)])
def test_training_from_cache_gives_the_same_loss_curve(
    family: str, variant, tiny_model, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=6, n_val=2, captions_per_image=2)
    runs = {}
    for enabled in ("true", "false"):
        out = tmp_path / f"cache-{enabled}"
        cfg = make_config(
            tiny_model(family, variant),
            manifest,
            out,
            f"feature_cache.enabled={enabled}",
            "optim.lr=5e-3",
            "eval_every_n_steps=2",
            f"feature_cache.dir={tmp_path / 'features'}",
        )
        run_train(cfg)
        runs[enabled] = read_log(out)
    assert len(runs["true"]) == 6 and "val_loss" in runs["true"][1]
    for cached, direct in zip(runs["true"], runs["false"], strict=True):
        assert cached["step"] == direct["step"]
        assert cached["loss"] == pytest.approx(direct["loss"], abs=1e-5)
        assert cached.get("val_loss", 0.0) == pytest.approx(direct.get("val_loss", 0.0), abs=1e-5)
    # One entry per image (captions of the same image share it).
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 8


def test_cache_is_filled_once_and_keys_follow_image_and_prompt(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(image)
    cache = FeatureCache(tmp_path / "cache", fingerprint="model-a")
    calls = []

    def encode(inputs):
        calls.append(inputs["count"])
        return {"feat": torch.arange(inputs["count"] * 3, dtype=torch.float32).reshape(inputs["count"], 3)}

    encoder = FeatureEncoder(lambda images, prompts: {"count": len(images)}, encode)
    examples = [Example(image, None, "x"), Example(image, None, "y"), Example(image, "Say.", "z")]
    assert cache.fill(examples, encoder, batch_size=8, show_progress=False) == 2
    assert cache.fill(examples, encoder, batch_size=8, show_progress=False) == 0
    assert calls == [2]
    assert cache.load_batch(examples[:2])["feat"].shape == (2, 3)
    other_model = FeatureCache(tmp_path / "cache", fingerprint="model-b")
    assert other_model.key_for(examples[0]) != cache.key_for(examples[0])
    changed = tmp_path / "b.png"
    Image.new("RGB", (4, 4), (9, 2, 3)).save(changed)
    assert cache.key_for(Example(changed, None, "x")) != cache.key_for(examples[0])


def test_weight_hash_sees_values_not_just_shapes() -> None:
    weights = {"w": torch.zeros(3, 2)}
    assert hash_frozen_weights(weights) == hash_frozen_weights({"w": torch.zeros(3, 2)})
    assert hash_frozen_weights(weights) != hash_frozen_weights({"w": torch.ones(3, 2)})
    assert hash_frozen_weights(weights) != hash_frozen_weights({"v": torch.zeros(3, 2)})
    assert hash_frozen_weights(weights) != hash_frozen_weights({"w": torch.zeros(2, 3)})
    assert hash_frozen_weights(weights) != hash_frozen_weights({"w": torch.zeros(3, 2, dtype=torch.int32)})


def test_weight_hash_is_the_same_for_any_chunking_and_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from altcap.train import cache as cache_module

    generator = torch.Generator().manual_seed(0)
    weights = {name: torch.randn(37, 11, generator=generator).to(torch.bfloat16) for name in "bac"}
    weights["empty"], weights["scalar"] = torch.zeros(0), torch.tensor(3.0)
    reference = hash_frozen_weights(weights)
    # Chunks of 64 bytes split every tensor into several jobs; a tiny in-flight cap folds them early.
    monkeypatch.setattr(cache_module, "HASH_CHUNK_BYTES", 64)
    monkeypatch.setattr(cache_module, "HASH_IN_FLIGHT_BYTES", 100)
    for threads in (1, 3):
        monkeypatch.setattr(cache_module, "HASH_THREADS", threads)
        small_chunks = hash_frozen_weights(weights)
        assert small_chunks == hash_frozen_weights(dict(reversed(weights.items())))
    assert small_chunks != reference  # the chunk size is part of the value; fixed by the constant
    changed = dict(weights, b=weights["b"].clone())
    changed["b"][36, 10] += 1  # the last byte of a middle chunk's tensor
    assert hash_frozen_weights(changed) != small_chunks


def write_images(folder: Path, count: int) -> list[Path]:
    """Distinct small PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        paths.append(folder / f"{index}.png")
        Image.new("RGB", (6, 5), (20 * index, 7, 250 - 9 * index)).save(paths[-1])
    return paths


def mean_pixels(images, prompts) -> dict:
    """A stand-in `prepare`: the images' pixels as a tensor (module level, so workers may pickle it)."""
    import numpy as np

    return {"pixels": torch.from_numpy(np.stack([np.asarray(image, dtype=np.float32) for image in images]))}


def encode_pixels(inputs: dict) -> dict:
    return {"feat": inputs["pixels"].mean(dim=(1, 2)), "rows": inputs["pixels"][:, 0, :2]}


def test_fill_in_worker_processes_writes_the_same_files_and_resumes(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images", 7)
    examples = [Example(path, None, "c") for path in images]
    encoder = FeatureEncoder(mean_pixels, encode_pixels)
    inline = FeatureCache(tmp_path / "inline", fingerprint="m")
    timer = PhaseTimer()
    assert inline.fill(examples, encoder, batch_size=3, show_progress=False, timer=timer) == 7
    assert set(timer.seconds) == {"cache_encode.keys", "cache_encode.first_batch"}
    workers = FeatureCache(tmp_path / "workers", fingerprint="m")
    # A partly filled cache (a killed run): only the rest is computed.
    assert workers.fill(examples[:2], encoder, 3, False, num_workers=2) == 2
    assert workers.fill(examples, encoder, 3, False, num_workers=2) == 5
    for example in examples:
        key = inline.key_for(example)
        assert workers.path_for(key).read_bytes() == inline.path_for(key).read_bytes()
    batch = workers.load_batch(examples)
    assert batch["feat"].shape == (7, 3) and batch["rows"].shape == (7, 2, 3)
    direct = encode_pixels(mean_pixels([load_rgb(path) for path in images], None))
    torch.testing.assert_close(batch["feat"], direct["feat"])


def test_fill_raises_a_failed_write_and_keeps_the_global_rng(tmp_path: Path, monkeypatch) -> None:
    examples = [Example(path, None, "c") for path in write_images(tmp_path / "images", 5)]
    cache = FeatureCache(tmp_path / "cache", fingerprint="m")
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    cache.fill(examples[:4], FeatureEncoder(mean_pixels, encode_pixels), 2, False, num_workers=2)
    assert torch.equal(torch.rand(1), expected)  # the fill drew nothing from training's RNG

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("altcap.train.cache.save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        cache.fill(examples, FeatureEncoder(mean_pixels, encode_pixels), 2, False)


@pytest.mark.slow
@pytest.mark.parametrize(("family", "variant"), [("blip2", "opt"), ("llava_next", None)])
def test_training_from_cache_never_opens_an_image_after_the_fill(
    family: str, variant, tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #13: with the cache on, collate must not decode (LLaVA: only header-read) any image."""
    import PIL.Image
    import PIL.ImageFile

    from altcap.train import run as run_module

    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=2)
    cfg = make_config(tiny_model(family, variant), manifest, tmp_path / "out", "num_workers=0", "epochs=3")
    counts = {"open": 0, "decode": 0, "filled": False}
    real_open, real_load = PIL.Image.open, PIL.ImageFile.ImageFile.load
    real_fill = run_module.fill_feature_cache

    def counting_open(*args, **kwargs):
        counts["open"] += counts["filled"]
        return real_open(*args, **kwargs)

    def counting_load(self, *args, **kwargs):
        counts["decode"] += counts["filled"]
        return real_load(self, *args, **kwargs)

    def fill_then_count(*args, **kwargs):
        cache = real_fill(*args, **kwargs)
        counts["filled"] = True
        return cache

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", counting_load)
    monkeypatch.setattr(run_module, "fill_feature_cache", fill_then_count)
    run_train(cfg)
    rows = read_log(cfg.output_dir)
    assert counts["filled"] and max(row["epoch"] for row in rows) == 2  # three epochs ran
    assert counts["decode"] == 0
    # LLaVA-NeXT's placeholder count needs each image's size: a header read, no pixel decode.
    if family == "llava_next":
        assert counts["open"] > 0
    else:
        assert counts["open"] == 0


@pytest.mark.parametrize(
    ("family", "variant"), [("blip2", "opt"), ("instructblip", None), ("llava_next", None)]
)
def test_cached_modules_are_released_after_caching_and_the_loss_still_runs(
    family: str, variant, tiny_model, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from altcap.models.loading import ModelConfig, apply_lora, load_model
    from altcap.train.frozen import find_frozen_part, release_frozen_modules

    model, processor, spec = load_model(ModelConfig(model_id=str(tiny_model(family, variant)), device="cpu"))
    model = apply_lora(model, spec, None, 4, 4, 0.0)
    images = [Image.new("RGB", (40, 40), (30 * i, 90, 10)) for i in range(2)]
    inputs = spec.build_inputs(processor, images, None, ["a dog on grass", "a red car"])
    model.eval()
    features = spec.feature_cache.encode_images(model, inputs)
    before = spec.feature_cache.forward_from_features(model, features, inputs)
    plan = SimpleNamespace(family=spec)
    cfg = SimpleNamespace(merge=False)
    assert release_frozen_modules(cfg, plan, model, SimpleNamespace(num_processes=1))
    released = [find_frozen_part(model, name) for name in spec.feature_cache.cached_part]
    assert all(
        p.device.type == "meta" for m in released if isinstance(m, torch.nn.Module) for p in m.parameters()
    )
    assert torch.allclose(spec.feature_cache.forward_from_features(model, features, inputs), before)
    # Under DDP (several processes) or with merge the weights must stay.
    assert not release_frozen_modules(cfg, plan, model, SimpleNamespace(num_processes=2))
    assert not release_frozen_modules(
        SimpleNamespace(merge=True), plan, model, SimpleNamespace(num_processes=1)
    )


@pytest.mark.slow
def test_cached_features_load_in_the_loader_workers(tiny_model, tmp_path: Path) -> None:
    # The workers read the cache files (CollateWithFeatures); losses equal those of in-process loading.
    manifest = write_manifest(tmp_path / "data", n_train=6, n_val=2)
    logs = {}
    for workers in (0, 2):
        cfg = make_config(
            tiny_model("blip2", "opt"), manifest, tmp_path / f"workers-{workers}",
            "feature_cache.enabled=true", f"num_workers={workers}", "eval_every_n_steps=2",
        )  # fmt: skip
        run_train(cfg)
        logs[workers] = read_log(cfg.output_dir)
    assert [r["step"] for r in logs[2]] == [r["step"] for r in logs[0]]
    for threaded, inline in zip(logs[2], logs[0], strict=True):
        assert threaded["loss"] == pytest.approx(inline["loss"], abs=1e-6)
        assert threaded.get("val_loss", 0.0) == pytest.approx(inline.get("val_loss", 0.0), abs=1e-6)


def test_collate_with_features_adds_each_examples_cached_row(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache", fingerprint="model-a")
    examples = []
    for index in range(3):
        image = tmp_path / f"{index}.png"
        Image.new("RGB", (4, 4), (index, 2, 3)).save(image)
        examples.append(Example(image, None, f"caption {index}"))
    count_images = lambda images, _: {"n": len(images)}  # noqa: E731
    random_rows = FeatureEncoder(count_images, lambda inputs: {"feat": torch.rand(inputs["n"], 2)})
    cache.fill(examples, random_rows, 8, False)
    collate = CollateWithFeatures(lambda batch: {"examples": batch}, cache)
    batch = collate([examples[2], examples[0]])
    assert batch["examples"] == [examples[2], examples[0]]
    expected = cache.load_batch([examples[2], examples[0]])["feat"]
    torch.testing.assert_close(batch["features"]["feat"], expected)
    assert not torch.equal(batch["features"]["feat"][0], batch["features"]["feat"][1])
