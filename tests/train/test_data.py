from pathlib import Path

import pytest
from train_fixtures import write_manifest

from altcap.data.manifest import ManifestRecord
from altcap.models.loading import ModelConfig, load_model
from altcap.train.data import EpochShuffleSampler, expand_examples, make_collate, read_split_examples

FAMILIES = [("blip", None), ("blip2", "opt"), ("blip2", "t5"), ("instructblip", None), ("llava_next", None)]


def test_expand_examples_one_per_caption_with_prompt_override(tmp_path: Path) -> None:
    records = [
        ManifestRecord(image="a.png", captions=["one", "two"], prompt="Say it."),
        ManifestRecord(image="/abs/b.png", captions=["three", " "]),
    ]
    examples = expand_examples(tmp_path / "m.jsonl", records, "Describe.")
    assert [(e.caption, e.prompt) for e in examples] == [
        ("one", "Say it."),
        ("two", "Say it."),
        ("three", "Describe."),
    ]
    assert examples[0].image == tmp_path / "a.png" and str(examples[2].image) == "/abs/b.png"


def test_sampler_order_depends_only_on_seed_and_epoch() -> None:
    first, again = EpochShuffleSampler(20, seed=3), EpochShuffleSampler(20, seed=3)
    first.select_epoch(1)
    again.select_epoch(1)
    assert list(first) == list(again) and sorted(first) == list(range(20))
    again.select_epoch(2)
    assert list(first) != list(again)


@pytest.mark.parametrize(("family", "variant"), FAMILIES)
def test_labels_cover_only_caption_tokens(
    family: str, variant: str | None, tiny_model, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, n_train=3, n_val=0)
    examples = read_split_examples(manifest, "train", None)
    model, processor, fam = load_model(ModelConfig(device="cpu", model_id=str(tiny_model(family, variant))))
    batch = make_collate(fam, processor, max_caption_tokens=64)(examples)
    inputs = batch["inputs"]
    labels = inputs["labels"]
    tokenizer = processor.tokenizer
    for row, example in enumerate(examples):
        learned = labels[row][labels[row] != -100].tolist()
        # Only the caption (plus the end-of-caption token) is learned: no prompt, image or padding.
        assert tokenizer.decode(learned, skip_special_tokens=True).strip() == example.caption
        assert len(learned) <= len(tokenizer(example.caption, add_special_tokens=False)["input_ids"]) + 1
    if "attention_mask" in inputs and labels.shape == inputs["attention_mask"].shape:
        assert (labels[inputs["attention_mask"] == 0] == -100).all()
    image_token = getattr(model.config, "image_token_index", None)
    if image_token is not None and labels.shape == inputs["input_ids"].shape:
        assert (labels[inputs["input_ids"] == image_token] == -100).all()
    assert model(**inputs).loss.isfinite()


def test_long_captions_are_cut_to_max_tokens(tiny_model, tmp_path: Path) -> None:
    examples = read_split_examples(write_manifest(tmp_path, n_train=2, n_val=0), "train", None)
    _, processor, fam = load_model(ModelConfig(device="cpu", model_id=str(tiny_model("blip2", "opt"))))
    labels = make_collate(fam, processor, max_caption_tokens=3)(examples)["inputs"]["labels"]
    assert ((labels != -100).sum(dim=1) == 4).all()  # 3 caption tokens + end of sequence
