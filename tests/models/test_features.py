"""Per-image feature rows (the cache's unit) re-batch to the same loss, also across batches."""

from __future__ import annotations

import _family_checks as checks
import torch

from altcap.models.features import split_feature_rows, stack_feature_rows


def test_rows_from_separate_batches_restack_to_the_same_loss(tiny_model_dir) -> None:
    """LLaVA rows encoded one image at a time have different tile counts; padding must not matter."""
    model, processor, family = checks.load(tiny_model_dir("llava_next"))
    images = checks.make_images()
    rows = []
    for image in images:
        single = family.build_inputs(processor, [image])
        rows += split_feature_rows(family.feature_cache.encode_images(model, single))
    assert len({row["vision_features"].shape[0] for row in rows}) > 1
    inputs = family.build_inputs(processor, images, checks.PROMPTS, checks.CAPTIONS)
    with torch.no_grad():
        full = model(**inputs).loss
        cached = family.feature_cache.forward_from_features(model, stack_feature_rows(rows), inputs)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


def test_same_shape_rows_stack_exactly() -> None:
    features = {"query_output": torch.randn(3, 4, 8)}
    rows = split_feature_rows(features)
    assert len(rows) == 3
    torch.testing.assert_close(stack_feature_rows(rows)["query_output"], features["query_output"])
