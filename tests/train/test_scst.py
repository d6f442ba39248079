"""Self-critical sequence training: log-probability alignment per family, the advantage, the
direction of the update, and `altcap train --objective scst` end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from train_fixtures import CAPTIONS, make_config, read_log, write_manifest

from altcap.config import ConfigError
from altcap.models.loading import ModelConfig, load_model
from altcap.train.cider_reward import CorpusCiderD, simple_tokenize
from altcap.train.config import ScstConfig
from altcap.train.data import Example, read_split_examples
from altcap.train.run import run_train
from altcap.train.scst import (
    ScstLoss,
    labels_are_shifted,
    self_critical_advantages,
    sequence_log_probs,
)


@pytest.fixture(scope="module")
def tiny_mini(tiny_altcap_mini_dir: Path) -> Path:
    return tiny_altcap_mini_dir


def _images(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (32 + 8 * i, 32), (40 * i, 90, 200 - 30 * i)) for i in range(count)]


# BLIP is left out: its text decoder's loss has label smoothing 0.1 built in, so it is not the mean
# token NLL; its labels align as LLaVA's and altcap-mini's do (causal, same length as the logits).
@pytest.mark.parametrize(
    ("family", "variant"),
    [
        ("blip2", "opt"),
        ("blip2", "t5"),
        ("instructblip", "llama"),
        ("llava_next", None),
        ("altcap_mini", None),
    ],
)
def test_sequence_log_probs_give_the_models_own_loss(tiny_model, tiny_mini, family, variant) -> None:
    folder = tiny_mini if family == "altcap_mini" else tiny_model(family, variant)
    model, processor, fam = load_model(ModelConfig(model_id=str(folder), device="cpu"))
    captions = [CAPTIONS[0], CAPTIONS[2][:9], CAPTIONS[4]]  # different lengths, so rows are padded
    inputs = fam.build_inputs(processor, _images(3), [None, "Say what is there.", None], captions)
    with torch.no_grad():
        output = model(**inputs)
    log_probs, counts = sequence_log_probs(output.logits, inputs["labels"], labels_are_shifted(model))
    assert labels_are_shifted(model) == (variant != "t5")
    assert counts.min() > 0 and len(set(counts.tolist())) > 1
    mean_nll = -log_probs.sum() / counts.sum()
    assert mean_nll.item() == pytest.approx(output.loss.item(), rel=1e-5)


def test_advantage_is_the_reward_above_the_other_samples_mean() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.5], [2.0, 2.0, 2.0]])
    advantages = self_critical_advantages(rewards)
    torch.testing.assert_close(advantages[0], torch.tensor([0.75, -0.75, 0.0]))
    torch.testing.assert_close(advantages[1], torch.zeros(3))


@pytest.mark.slow
def test_one_step_raises_the_better_samples_log_probability(tiny_mini: Path) -> None:
    """Samples are fixed (generate replaced) so the step's direction is known: towards the reference."""
    torch.manual_seed(0)
    model, processor, family = load_model(ModelConfig(model_id=str(tiny_mini), device="cpu"))
    good, bad = CAPTIONS[1], CAPTIONS[6]
    fixed = dataclasses.replace(family, generate=lambda *args, **kwargs: [good, bad])
    reward = CorpusCiderD([[CAPTIONS[1], CAPTIONS[3]], [CAPTIONS[5]], [CAPTIONS[7]]])
    loss_module = ScstLoss(model, fixed, processor, reward, ScstConfig(samples=2)).train()
    images = _images(1)
    examples = [Example(Path("x.png"), None, good, (CAPTIONS[1], CAPTIONS[3]))]
    inputs = family.build_inputs(processor, images, [None])

    def log_probs() -> torch.Tensor:
        with torch.no_grad():
            return loss_module._log_probs(inputs, examples, images, [good, bad])[0]

    before = log_probs()
    optimizer = torch.optim.SGD(model.language_model.parameters(), lr=0.5)
    loss = loss_module(inputs, examples, images)
    loss.backward()
    optimizer.step()
    after = log_probs()
    assert after[0] > before[0] and after[1] < before[1]
    means = loss_module.pop_mean_reward()
    assert means["sample_cider_d"] > 0
    assert means["sample_words"] == pytest.approx(
        (len(simple_tokenize(good).split()) + len(simple_tokenize(bad).split())) / 2
    )
    assert loss_module.pop_mean_reward() == {}


def test_per_image_examples_carry_every_reference(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=3, n_val=1, captions_per_image=3)
    per_caption = read_split_examples(manifest, "train", None)
    per_image = read_split_examples(manifest, "train", None, per_image=True)
    assert len(per_caption) == 9 and len(per_image) == 3
    assert list(per_image[0].references) == [e.caption for e in per_caption[:3]]


@pytest.mark.slow
def test_altcap_train_scst_end_to_end(tiny_mini: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=2, captions_per_image=2)
    out = tmp_path / "run"
    cfg = make_config(
        tiny_mini,
        manifest,
        out,
        "objective=scst",
        "scst.samples=3",
        "scst.max_new_tokens=8",
        "max_steps=2",
        "grad_accum_steps=1",
    )
    run_train(cfg)
    rows = read_log(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["sample_cider_d"] >= 0 for r in rows)
    assert all("caption_tokens" not in r for r in rows)  # sampled captions: no teacher-forced token counts
    assert rows[-1]["val_loss"] <= 0  # -CIDEr-D of greedy captions
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["feature_cache_used"] is False and provenance["train_examples"] == 4
    # A random tiny model's samples rarely share an n-gram with the references (reward 0, no
    # gradient), so learning itself is pinned by test_one_step_raises_the_better_samples_log_probability.
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "reward_curves.png").stat().st_size > 0 and not (out / "loss_curves.png").exists()


@pytest.mark.slow
def test_scst_with_the_encoder_decoder_family_trains(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0, captions_per_image=2)
    out = tmp_path / "run"
    run_train(
        make_config(
            tiny_model("blip2", "t5"),
            manifest,
            out,
            "objective=scst",
            "scst.samples=2",
            "scst.max_new_tokens=6",
            "max_steps=1",
            "grad_accum_steps=1",
        )
    )
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert "sample_cider_d" in read_log(out)[0]


def test_scst_refuses_a_forced_feature_cache_and_compile(tiny_mini: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n_train=2, n_val=0)
    with pytest.raises((ConfigError, ValueError), match="compile=true with objective=scst"):
        run_train(make_config(tiny_mini, manifest, tmp_path / "b", "objective=scst", "compile=true"))
    with pytest.raises((ConfigError, ValueError), match="objective=scst samples captions from pixels"):
        run_train(
            make_config(tiny_mini, manifest, tmp_path / "a", "objective=scst", "feature_cache.enabled=true")
        )


@pytest.mark.slow
def test_scst_on_two_processes(tiny_model, tmp_path: Path) -> None:
    """`--gpus 2 --objective scst`: DDP wraps the whole SCST step (sampling included) on gloo."""
    from test_multiprocess import launch

    from altcap.config import dump_config

    manifest = write_manifest(tmp_path / "data", n_train=4, n_val=2, captions_per_image=2)
    out = tmp_path / "run"
    cfg = make_config(tiny_model("blip2", "t5"), manifest, out, "objective=scst", "scst.samples=2",
                      "scst.max_new_tokens=5", "max_steps=2", "grad_accum_steps=1", "precision=fp32")
    config = tmp_path / "scst.yaml"
    dump_config(cfg, config)
    launch(2, ["-m", "altcap.cli", "train", str(config)])
    rows = read_log(out)
    assert [r["step"] for r in rows] == [1, 2] and "sample_cider_d" in rows[0]
    assert rows[-1]["val_loss"] <= 0
    assert json.loads((out / "provenance.json").read_text())["device"] == "2 x cpu"


def test_length_reward_weight_reaches_the_loss(tiny_mini: Path) -> None:
    """Eval mode returns -mean greedy reward: CIDEr-D alone at weight 0, plus the length term above 0."""
    from altcap.train.cider_reward import compute_length_term

    model, processor, family = load_model(ModelConfig(model_id=str(tiny_mini), device="cpu"))
    caption = "a dog plays"
    fixed = dataclasses.replace(family, generate=lambda *args, **kwargs: [caption])
    reward = CorpusCiderD([[CAPTIONS[1], CAPTIONS[3]], [CAPTIONS[5]], [CAPTIONS[7]]])
    references = (CAPTIONS[1], CAPTIONS[3])
    examples = [Example(Path("x.png"), None, CAPTIONS[1], references)]
    images = _images(1)
    inputs = family.build_inputs(processor, images, [None])
    cider = reward.score(caption, references)
    term = compute_length_term(caption, references)
    assert 0 < term < 1
    for weight in (0.0, 0.7):
        settings = ScstConfig(samples=2, length_reward_weight=weight)
        loss_module = ScstLoss(model, fixed, processor, reward, settings).eval()
        loss = loss_module(inputs, examples, images)
        assert loss.item() == pytest.approx(-(cider + weight * term), rel=1e-6)
    with pytest.raises((ConfigError, ValueError), match="length_reward_weight"):
        ScstConfig.model_validate({"length_reward_weight": -1})
