import json
from pathlib import Path

import pytest
from PIL import Image
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


def test_length_grouping_batches_similar_lengths_and_keeps_every_example() -> None:
    import random

    from altcap.train.data import LENGTH_GROUP_BATCHES

    lengths = [random.Random(index).randint(3, 40) for index in range(1003)]
    batch_size = 4
    sampler = EpochShuffleSampler(len(lengths), seed=5, lengths=lengths, batch_size=batch_size)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))  # a permutation: nothing dropped or repeated
    batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    assert len(batches[-1]) == len(lengths) % batch_size  # the short batch is still the last one
    assert lengths[batches[0][0]] == max(lengths)  # the longest batch first: out of memory at step 1

    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    shuffled = list(EpochShuffleSampler(len(lengths), seed=5))
    plain = padding([shuffled[k : k + batch_size] for k in range(0, len(shuffled), batch_size)])
    assert padding(batches) < plain / 5
    # Batches stay within one window of the shuffle, so the epoch order is not one global sort.
    assert len(lengths) > batch_size * LENGTH_GROUP_BATCHES
    again = EpochShuffleSampler(len(lengths), seed=5, lengths=lengths, batch_size=batch_size)
    assert list(again) == order  # depends only on (seed, epoch): resume rebuilds it
    again.select_epoch(1)
    assert list(again) != order


def test_collate_counts_caption_tokens_and_padded_positions(tiny_model, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, n_train=3, n_val=0)
    _, processor, family = load_model(ModelConfig(model_id=str(tiny_model("blip"))))
    examples = read_split_examples(manifest, "train", None)
    batch = make_collate(family, processor, max_caption_tokens=32)(examples)
    labels = batch["inputs"]["labels"]
    assert batch["padded_tokens"] == labels.numel() == 3 * labels.shape[1]
    assert batch["caption_tokens"] == int((labels != -100).sum()) < batch["padded_tokens"]


class _RecordingFamily:
    """Stands in for a model family: keeps the images a collate hands to `build_inputs`."""

    def __init__(self) -> None:
        self.images: list = []

    def build_inputs(self, processor, images, prompts, captions=None, with_pixels=True):
        import torch

        self.images.extend(images)
        return {"labels": torch.zeros((len(images), 2), dtype=torch.long)}


class _Processor:
    class tokenizer:
        def __new__(cls, text, add_special_tokens=False):
            return {"input_ids": [[1, 2]] * len(text) if isinstance(text, list) else [1, 2]}


def test_train_and_caption_see_identical_pixels(tmp_path: Path) -> None:
    """Issue 27 item 2: a rotated (EXIF) JPEG and a transparent PNG reach the model the same way in
    training and captioning: upright, alpha over white, RGB."""
    import numpy as np
    from PIL import Image

    from altcap.infer.batches import CaptionItem, _prepare_batch
    from altcap.train.data import Example

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown rotated 90 degrees clockwise
    Image.new("RGB", (40, 20), (10, 200, 10)).save(tmp_path / "rotated.jpg", exif=exif)
    rgba = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (0, 0, 15, 30))
    rgba.save(tmp_path / "clear.png")
    paths = [tmp_path / "rotated.jpg", tmp_path / "clear.png"]
    trained, captioned = _RecordingFamily(), _RecordingFamily()
    make_collate(trained, _Processor(), 8)([Example(p, None, "a cat") for p in paths])
    _prepare_batch(captioned, _Processor(), [CaptionItem(p.name, p) for p in paths], None)
    for seen_in_training, seen_in_captioning in zip(trained.images, captioned.images, strict=True):
        assert np.array_equal(np.asarray(seen_in_training), np.asarray(seen_in_captioning))
    assert trained.images[0].size == (20, 40) and trained.images[0].mode == "RGB"
    assert trained.images[1].getpixel((25, 5)) == (255, 255, 255)  # transparent -> white, not black


def _load_all(examples):
    from altcap.train.data import load_rgb

    return [load_rgb(e.image) for e in examples]


def test_an_image_broken_after_the_screen_fails_cleanly_in_a_worker(tmp_path: Path) -> None:
    """The DataLoader re-raises a worker's error with the worker's traceback in its text; the user
    must see the loader's one-line message instead (as `altcap train` prints it)."""
    from torch.utils.data import DataLoader

    from altcap.data.images import ImageLoadError
    from altcap.train.data import Example, ExampleDataset

    (tmp_path / "gone.png").write_bytes(b"")
    dataset = ExampleDataset([Example(tmp_path / "gone.png", None, "x")])
    batches = iter(DataLoader(dataset, collate_fn=_load_all, num_workers=1))
    with pytest.raises(ImageLoadError) as err:
        next(batches)
    # Stop the worker now: left to the garbage collector, its shutdown waits 5 s in a later test.
    batches._shutdown_workers()
    expected = f"{tmp_path / 'gone.png'}: file is empty (0 bytes); re-copy or re-download the image"
    assert str(err.value) == expected


def _add_contexts(manifest: Path, contexts: dict[int, str]) -> None:
    """Give records (by line index) a `metadata.context`."""
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    for index, context in contexts.items():
        rows[index]["metadata"] = {"context": context}
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_context_reaches_the_prompt_tokens_of_instruction_families_only(tmp_path: Path) -> None:
    from altcap.models.registry import DEFAULT_INSTRUCTION, get_family
    from altcap.models.tiny_chat import TINY_SPECS, build_chat_tokenizer, build_tiny_processor
    from altcap.train.config import TrainConfig
    from altcap.train.validate import TrainPlan, check_data

    manifest = write_manifest(tmp_path, n_train=2, n_val=0)
    _add_contexts(manifest, {0: "a shop listing"})
    cfg = TrainConfig(data={"manifest": manifest, "val_split": None})
    prompts = {}
    for name in ("qwen2_5_vl", "blip"):
        plan, problems = TrainPlan(family=get_family(name)), []
        check_data(cfg, plan, problems)
        assert problems == []
        prompts[name] = [e.prompt for e in plan.train_examples]
    assert prompts["qwen2_5_vl"] == [f"This image appears in: a shop listing\n{DEFAULT_INSTRUCTION}", None]
    assert prompts["blip"] == [None, None]  # BLIP reads a prompt as a caption prefix: no context
    spec = TINY_SPECS["qwen2_5_vl"]
    processor = build_tiny_processor("qwen2_5_vl", spec, build_chat_tokenizer(spec))
    image = Image.new("RGB", (28, 28), (200, 30, 30))
    family = get_family("qwen2_5_vl")
    texts = [
        processor.tokenizer.decode(family.build_inputs(processor, [image], [p], ["a dog"])["input_ids"][0])
        for p in prompts["qwen2_5_vl"]
    ]
    assert "This image appears in: a shop listing\n" + DEFAULT_INSTRUCTION in texts[0]
    assert "shop listing" not in texts[1] and DEFAULT_INSTRUCTION in texts[1]
