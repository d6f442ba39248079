"""The caption loss of a decoder-only VLM with logits only where a caption token is predicted.

Why: a chat VLM's own `forward(labels=...)` projects every position of the sequence onto the
vocabulary and upcasts those logits to fp32 before the loss, although only the caption positions
(~30 of ~300 for a 256-token image) carry a label. For Qwen2.5-VL-3B at batch 16 that is ~9 GB of
logits and their gradients (fp32 and bf16 copies of 16 x 306 x 151,936) and ~10 % of the step's
FLOPs. transformers' `logits_to_keep` (a tensor of positions) lets the model project only the
positions asked for; the loss over them is the same cross-entropy, mean over caption tokens.
liger-kernel's fused linear cross-entropy goes further (no logits at all), but it patches model
classes per architecture; this needs nothing beyond the model's own forward.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from altcap.models.text_inputs import IGNORE_INDEX


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether `model` (or the model inside its PEFT wrapper) is a decoder-only LM whose forward
    takes `logits_to_keep` (encoder-decoder models align logits with labels differently)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return not getattr(base.config, "is_encoder_decoder", False) and _forward_keeps_logits(type(base))


@functools.cache
def _forward_keeps_logits(model_class: type) -> bool:
    # Asked at every training step: the class's signature is read once.
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def predicting_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions p whose logits predict a labelled token (labels[:, p + 1] set in any row).

    Args:
        labels: [batch, sequence] with IGNORE_INDEX where nothing is learned.

    Returns:
        Sorted 1-D positions, the same for every row (rows share one projection call).
    """
    labelled = (labels[:, 1:] != IGNORE_INDEX).any(dim=0)
    return torch.nonzero(labelled, as_tuple=False).flatten()


def caption_loss(model: Any, inputs: Mapping[str, Any], **model_kwargs: Any) -> torch.Tensor:
    """Mean cross-entropy over the caption tokens, projecting only the positions that predict one.

    Equal to `model(**inputs, **model_kwargs).loss` (fp32 loss over the shifted labels, ignored
    positions left out); falls back to exactly that where the model cannot keep positions.

    Args:
        model: the VLM (PEFT-wrapped in training).
        inputs: model inputs with `labels`.
        model_kwargs: further forward arguments (e.g. cached image features).

    Returns:
        The scalar loss.
    """
    if not accepts_logits_to_keep(model):
        return model(**inputs, **model_kwargs).loss
    labels = inputs["labels"]
    keep = predicting_positions(labels)
    rest = {key: value for key, value in inputs.items() if key != "labels"}
    logits = model(**rest, **model_kwargs, logits_to_keep=keep).logits
    targets = labels[:, keep + 1].to(logits.device)
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )
