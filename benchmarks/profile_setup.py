"""What the profiler runs: altcap's training step from cached features, or one `generate` call,
each built with altcap's own functions (used by `python -m benchmarks.profile_gpu`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from altcap.config import load_config
from altcap.models.text_inputs import move_to_device
from altcap.train.data import load_rgb, read_split_examples
from benchmarks.train_manifests import TINY_CAPTIONS, write_flickr_manifest, write_tiny_manifest


def write_manifest(args: argparse.Namespace, root: Path) -> Path:
    """A manifest of --batch-size train examples: Flickr8k, a JPEG folder (captions from its
    `captions.txt` rows `image,caption` if present, else synthetic), or synthetic images."""
    folder = args.images
    if folder is None:
        return write_tiny_manifest(root, args.batch_size)
    if (folder / "Flickr8k.token.txt").is_file():
        return write_flickr_manifest(folder, root, args.batch_size)
    paths = (sorted(folder.glob("*.jpg")) or sorted(folder.glob("Images/*.jpg")))[: args.batch_size]
    if not paths:
        raise SystemExit(f"--images {folder}: no .jpg files there or in {folder / 'Images'}")
    table = folder / "captions.txt"
    lines = table.read_text("utf-8").splitlines()[1:] if table.is_file() else []  # [0]: header
    captions = dict(reversed([line.split(",", 1) for line in lines if "," in line]))  # first one wins
    rows = [
        {"image": str(p.resolve()), "captions": [captions.get(p.name, TINY_CAPTIONS[i % 4])]}
        for i, p in enumerate(paths)
    ]
    root.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({**row, "split": "train"}) + "\n" for row in rows)
    (root / "manifest.jsonl").write_text(text, encoding="utf-8")
    return root / "manifest.jsonl"


def setup_train(args: argparse.Namespace, model_id: str, scratch: Path) -> dict[str, Any]:
    """Model, optimizer and one cached batch, built with altcap's own train functions."""
    from altcap.train.compile import compile_for_training
    from altcap.train.config import TrainConfig
    from altcap.train.data import make_collate
    from altcap.train.frozen import free_cached_part, frozen_submodules
    from altcap.train.run import CaptionLoss, build_optimizer, build_scheduler, load_train_model
    from altcap.train.validate import validate_train_config

    sets = [f"model.model_id={model_id}", f"data.manifest={write_manifest(args, scratch / 'data')}"]
    sets += [f"output_dir={scratch / 'run'}", f"batch_size={args.batch_size}", "data.val_split=null"]
    sets += [f"lora.r={args.lora_r}", f"lora.alpha={args.lora_r}", f"compile_mode={args.compile_mode}"]
    sets += [f"compile_scope={args.compile_scope}"]
    sets += [f"gradient_checkpointing={args.gradient_checkpointing}", f"compile={args.compile}"]
    sets += [f"model.family={args.family}"] if args.family else []
    sets += args.set
    cfg = load_config(TrainConfig, None, {}, sets)
    plan, device = validate_train_config(cfg), "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    model, processor = load_train_model(cfg, plan, device)
    family, precision = plan.family, plan.precision
    examples = [plan.train_examples[i % len(plan.train_examples)] for i in range(args.batch_size)]
    model.eval()  # the cache encodes with the frozen part in eval mode and keeps features on the CPU
    images, prompts = [load_rgb(e.image) for e in examples], [e.prompt for e in examples]
    inputs = move_to_device(family.build_inputs(processor, images, prompts, None), device)
    with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=precision == "bf16"):
        features = {k: v.to("cpu") for k, v in family.feature_cache.encode_images(model, inputs).items()}
    free_cached_part(model, family)  # as `altcap train` does: training from features never runs them
    batch = make_collate(family, processor, cfg.data.max_caption_tokens, with_pixels=False)(examples)
    loss_module = CaptionLoss(model, family)
    if cfg.compile:
        compile_for_training(loss_module, cfg)
    optimizer = build_optimizer(cfg, loss_module, device)
    loss_module.train()
    for module in frozen_submodules(model, family):
        module.eval()
    scheduler = build_scheduler(cfg, optimizer, args.steps + args.warmup_steps)
    if cfg.cuda_graphs:  # --set cuda_graphs=true: the LM's passes replayed as `altcap train` does
        family.graphed_training.enable(model)  # warm-up steps see each shape eagerly, then capture it
    return dict(
        cfg=cfg, device=device, precision=precision, loss_module=loss_module, optimizer=optimizer,
        scheduler=scheduler, inputs=batch["inputs"], features=features, model=model,
    )  # fmt: skip


def make_train_step(state: dict[str, Any]) -> Callable[[], float]:
    """One optimizer step from cached features, as `altcap.train.loop.fit` runs it (no accumulation)."""
    device, loss_module, optimizer = state["device"], state["loss_module"], state["optimizer"]
    max_norm = state["cfg"].optim.max_grad_norm
    parameters = list(loss_module.parameters())  # fit() lists them once too (TrainRun.parameters)

    def step() -> torch.Tensor:
        # fit() gets the text batch from the loader and the features from the cache on the CPU.
        inputs, features = move_to_device(state["inputs"], device), move_to_device(state["features"], device)
        with torch.autocast(device, torch.bfloat16, enabled=state["precision"] == "bf16"):
            loss = loss_module(inputs, features)
        loss.backward()
        fused = optimizer.defaults.get("fused")
        if fused:  # fit(): the fused optimizer skips a NaN step on the GPU, no sync
            optimizer.found_inf = (~torch.isfinite(loss.detach())).float()
        elif not torch.isfinite(loss.detach()).item():  # fit()'s check_finite: a sync per step
            raise RuntimeError(f"loss is {loss.item()}; the profiled step diverged")
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        optimizer.step()
        if fused:
            del optimizer.found_inf
        state["scheduler"].step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()  # fit() reads losses at log rows only

    return step


def setup_caption(
    args: argparse.Namespace, model_id: str, scratch: Path, mode: str = "caption"
) -> dict[str, Any]:
    """Inference model (as `altcap caption` loads it), one batch, and its step: `generate`, or for
    mode "encode" the family's feature-cache encoder (the frozen part, e.g. the vision tower)."""
    from altcap.infer.config import GenerationConfig
    from altcap.models.loading import ModelConfig, load_model

    model, processor, family = load_model(ModelConfig(model_id=model_id, family=args.family))
    model.requires_grad_(False)  # nothing trains: every weight counts as frozen in the breakdown
    examples = read_split_examples(write_manifest(args, scratch / "data"), "train", None)
    images = [load_rgb(examples[i % len(examples)].image) for i in range(args.batch_size)]
    inputs = move_to_device(family.build_inputs(processor, images), model.device, model.dtype)
    n = args.max_new_tokens
    kwargs = GenerationConfig(
        num_beams=args.num_beams, max_new_tokens=n, min_new_tokens=n, cuda_graphs=args.cuda_graphs
    ).generate_kwargs()

    @torch.inference_mode()
    def step() -> str:
        return family.generate(model, processor, inputs, kwargs)[0]

    @torch.inference_mode()
    def encode() -> str:
        features = family.feature_cache.encode_images(model, inputs)
        return ", ".join(f"{k} {tuple(v.shape)}" for k, v in features.items())

    if mode == "encode" and family.feature_cache is None:
        raise SystemExit(f"encode: family {family.name} has no feature cache (no frozen part to time alone)")
    return {"model": model, "generation": kwargs, "step": encode if mode == "encode" else step}
