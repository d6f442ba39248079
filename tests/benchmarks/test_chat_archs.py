"""The chat-VLM recipes' architectures: real sizes (parameter counts of the published checkpoints)
and the tiny build through the same code, loaded by altcap like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.chat_archs import build_chat_arch, build_chat_model
from benchmarks.chat_configs import CHAT_ARCHS
from benchmarks.chat_data import PROMPT, build_corpus, make_captions

# Parameters of the published checkpoints (model cards / safetensors index), billions.
PUBLISHED_BILLIONS = {
    "qwen2.5-vl-3b-instruct": 3.75,
    "qwen3-vl-4b-instruct": 4.44,
    "smolvlm2-2.2b-instruct": 2.25,
    "gemma-3-4b-it": 4.30,
    "paligemma2-3b-pt-224": 3.03,
}
# Image tokens per image at the benchmarks' resolution (448 px Qwen: 16 x 16 merged patches).
IMAGE_TOKENS_448 = {"qwen2.5-vl-3b-instruct": 256, "gemma-3-4b-it": 256, "paligemma2-3b-pt-224": 256}


@pytest.mark.parametrize("name", CHAT_ARCHS)
def test_full_size_architecture_has_the_published_parameter_count(name: str) -> None:
    model, _ = build_chat_model(name, "meta", build_corpus())
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    assert billions == pytest.approx(PUBLISHED_BILLIONS[name], rel=0.01)
    assert model.dtype == torch.bfloat16


def test_every_architecture_has_a_tiny_override_and_a_published_count() -> None:
    from benchmarks.chat_configs import TINY_OVERRIDES

    assert set(TINY_OVERRIDES) == set(CHAT_ARCHS) == set(PUBLISHED_BILLIONS)


def test_unknown_architecture_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"choose one of qwen2\.5-vl-3b-instruct"):
        build_chat_model("qwen9", "meta", ["x"])


@pytest.mark.parametrize(
    "name",
    [
        "paligemma2-3b-pt-224",
        *(pytest.param(n, marks=pytest.mark.slow) for n in CHAT_ARCHS if n != "paligemma2-3b-pt-224"),
    ],
)
def test_tiny_build_loads_through_altcap_and_trains_on_a_caption(name: str, tmp_path: Path) -> None:
    from PIL import Image

    from altcap.models.loading import ModelConfig, load_model

    folder = build_chat_arch(name, tmp_path / "model", "cpu", build_corpus(), tiny=True)
    model, processor, family = load_model(ModelConfig(model_id=str(folder), device="cpu", dtype="float32"))
    caption = make_captions(1, seed=3)[0]
    image = Image.new("RGB", (448, 448), (120, 30, 200))
    inputs = family.build_inputs(processor, [image], [PROMPT], [caption])
    loss = model(**inputs).loss
    assert torch.isfinite(loss) and loss.item() > 0
    tokens = inputs["input_ids"][0].tolist()
    if name in IMAGE_TOKENS_448:
        image_id = model.config.image_token_id if hasattr(model.config, "image_token_id") else None
        image_id = image_id if image_id is not None else model.config.image_token_index
        assert tokens.count(image_id) == IMAGE_TOKENS_448[name]
    # One token a word (plus punctuation): captions are as long in tokens as with real tokenizers.
    labelled = int((inputs["labels"][0] != -100).sum())
    assert len(caption.split()) <= labelled <= len(caption.split()) + 4


@pytest.mark.parametrize("name", ["gemma-3-4b-it", "paligemma2-3b-pt-224"])
def test_processor_fallback_builds_the_same_prompt_from_transformers_names(name: str) -> None:
    from benchmarks import chat_archs

    spec, model_type = chat_archs.build_spec(name, tiny=True)
    tokenizer = chat_archs.build_tokenizer(spec, build_corpus(), 8000)
    primary = chat_archs.build_processor(model_type, spec, tokenizer)
    fallback = chat_archs.build_processor_from_names(model_type, spec, tokenizer)
    assert type(fallback).__name__ == type(primary).__name__
    assert fallback.chat_template == primary.chat_template
    from PIL import Image

    image = Image.new("RGB", (300, 200), (10, 200, 30))
    text = "<start_of_image>x" if model_type == "gemma3" else "caption en"
    ids = [p(images=[image], text=[text], return_tensors="pt")["input_ids"] for p in (primary, fallback)]
    assert torch.equal(ids[0], ids[1])
