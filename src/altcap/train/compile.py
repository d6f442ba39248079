"""torch.compile for training, in place, one transformer block at a time by default.

Compiling the whole loss module of a 48-layer T5-XL did not finish in 6 minutes on an H100
(docs/benchmarks.md, session 3). Every block of a stack runs the same code on same-shaped
weights, so compiling the blocks one by one (PyTorch's "regional compilation" recipe) traces and
generates kernels once per distinct block and reuses them for the rest; the few ops outside the
blocks (embeddings, final norm, LM head, loss) stay eager. In place (nn.Module.compile), so
parameter names, checkpoints, resume and save_pretrained are those of an uncompiled run.
"""

from __future__ import annotations

from typing import Any

import torch


def repeated_blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """Entries of every outermost ModuleList whose modules share one class: the layers.

    Lists inside a block are not searched: the block's compiled code already covers them.
    """
    if isinstance(module, torch.nn.ModuleList) and len({type(m) for m in module}) == 1:
        return list(module)
    return [block for child in module.children() for block in repeated_blocks(child)]


def compile_for_training(loss_module: torch.nn.Module, cfg: Any) -> int:
    """Compile `loss_module` in place as `cfg` (TrainConfig) asks; returns how many modules were compiled.

    Dynamic shapes: dynamic padding gives every batch its own caption length, which would otherwise
    recompile each new length.
    """
    mode = cfg.compile_mode if cfg.compile_backend == "inductor" else None  # modes are inductor's
    options = {"backend": cfg.compile_backend, "dynamic": True, "mode": mode}
    if cfg.compile_scope == "model":
        modules = [loss_module]
    else:
        # Only layers that train: the frozen vision tower and Q-Former run once per image (or never,
        # from cached features), and all block classes share transformers' layer `__call__`, whose
        # compiled variants count against one recompile limit.
        modules = [b for b in repeated_blocks(loss_module) if any(p.requires_grad for p in b.parameters())]
    for module in modules:
        module.compile(**options)
    return len(modules)
