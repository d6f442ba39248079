"""Splitting `encode_images` output into per-image rows (what a feature cache stores) and back.

Most families return same-shaped rows, but LLaVA-NeXT rows have one entry per image tile, and
tile counts differ by aspect ratio; `stack_feature_rows` zero-pads them, which is safe because
`forward_from_features` reads only each image's own tiles.
"""

from __future__ import annotations

import torch


def split_feature_rows(features: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """One dict per image from a batched `encode_images` result.

    Args:
        features: feature name -> tensor with the batch as its first dimension.

    Returns:
        Per-image dicts of (contiguous, cloned) tensors, safe to save one by one.
    """
    batch_size = len(next(iter(features.values())))
    return [{key: value[row].clone() for key, value in features.items()} for row in range(batch_size)]


def stack_feature_rows(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch per-image feature dicts, zero-padding each tensor's first dimension to the longest row.

    Args:
        rows: per-image dicts with the same keys (e.g. loaded from a feature cache).

    Returns:
        feature name -> batched tensor.
    """
    stacked: dict[str, torch.Tensor] = {}
    for key in rows[0]:
        tensors = [row[key] for row in rows]
        longest = max(t.shape[0] for t in tensors) if tensors[0].dim() else 0
        if tensors[0].dim() == 0 or all(t.shape[0] == longest for t in tensors):
            stacked[key] = torch.stack(tensors)
            continue
        padded = tensors[0].new_zeros((len(tensors), longest, *tensors[0].shape[1:]))
        for index, tensor in enumerate(tensors):
            padded[index, : tensor.shape[0]] = tensor
        stacked[key] = padded
    return stacked
