"""`TrainConfig`: every knob of `altcap train`, one nested pydantic model per concern.

Defaults follow issue #4 (BLIP-2 Flan-T5-XL LoRA recipe): r=128, alpha=128, AdamW lr 3e-5 with a
cosine schedule, batch 32 x accumulation 2, 4 epochs, bf16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from altcap.config import StageConfig
from altcap.data.context import CONTEXT_TEMPLATE_HELP, DEFAULT_CONTEXT_TEMPLATE, ContextTemplate
from altcap.data.image_settings import DEFAULT_MAX_DECODED_PIXELS, MAX_DECODED_PIXELS_HELP, SKIP_FLAG_HELP
from altcap.models.loading import ModelConfig
from altcap.models.registry import DEFAULT_INSTRUCTION


class DataConfig(StageConfig):
    """Which manifest records to train and validate on, and how to turn them into text."""

    manifest: Path | None = Field(default=None, description="JSONL manifest written by `altcap data`.")
    prompt: str | None = Field(
        default=None,
        description=f"Instruction given with every image; a record's own `prompt` overrides it. None = the "
        f"family's default ({DEFAULT_INSTRUCTION!r}; BLIP, not instruction-tuned, gets no prefix).",
    )
    context_template: ContextTemplate = Field(
        default=DEFAULT_CONTEXT_TEMPLATE, description=CONTEXT_TEMPLATE_HELP
    )
    train_split: str = Field(default="train", description="Manifest split used for training.")
    val_split: str | None = Field(
        default="val", description="Manifest split used for validation loss; None = no validation."
    )
    max_caption_tokens: int = Field(
        default=128, gt=0, description="Captions are truncated to this many tokens."
    )
    max_train_records: int | None = Field(
        default=None, gt=0, description="Use only the first N training records (smoke runs); None = all."
    )
    max_val_records: int | None = Field(
        default=None, gt=0, description="Use only the first N validation records; None = all."
    )
    skip_unreadable_images: bool = Field(default=False, description=SKIP_FLAG_HELP)
    max_decoded_pixels: int = Field(
        default=DEFAULT_MAX_DECODED_PIXELS, gt=0, description=MAX_DECODED_PIXELS_HELP
    )


class LoraSettings(StageConfig):
    """LoRA adapter shape; PEFT field names."""

    r: int = Field(default=128, gt=0, description="LoRA rank.")
    alpha: int = Field(default=128, gt=0, description="LoRA alpha; the update is scaled by alpha / r.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | None = Field(
        default=None,
        description="Leaf layer names to adapt, e.g. [q_proj, v_proj]; None = the family default.",
    )
    include_qformer: bool = Field(
        default=False,
        description="Also adapt the Q-Former (BLIP-2 / InstructBLIP); disables the frozen feature cache.",
    )
    adapt_projector: bool = Field(
        default=False,
        description="Also put LoRA on the projector between vision tower and language model (chat VLMs); "
        "the cached image features then change in training, so the feature cache is off.",
    )
    adapt_vision: bool = Field(
        default=False,
        description="Also put LoRA on every Linear layer of the vision tower (chat VLMs); turns the "
        "feature cache off.",
    )

    def adapted_parts(self) -> list[str]:
        """The parts besides the language model that get LoRA: "projector", "vision" or none."""
        asked = (("projector", self.adapt_projector), ("vision", self.adapt_vision))
        return [part for part, on in asked if on]


class OptimConfig(StageConfig):
    """AdamW settings."""

    lr: float = Field(default=3e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW decoupled weight decay.")
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="AdamW (beta1, beta2).")
    eps: float = Field(default=1e-8, gt=0, description="AdamW epsilon.")
    max_grad_norm: float | None = Field(
        default=1.0, gt=0, description="Clip the gradient norm to this at every step; None = no clipping."
    )
    fused: bool | None = Field(
        default=None, description="Fused AdamW kernel; None = on when training on CUDA, off otherwise."
    )


class ScheduleConfig(StageConfig):
    """Learning-rate schedule (transformers `get_scheduler` names)."""

    name: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        default="cosine", description="Decay shape after warm-up."
    )
    warmup_ratio: float = Field(
        default=0.03, ge=0, lt=1, description="Warm-up length as a fraction of all optimizer steps."
    )
    warmup_steps: int | None = Field(
        default=None, ge=0, description="Warm-up length in optimizer steps; overrides warmup_ratio when set."
    )


class EarlyStoppingConfig(StageConfig):
    """Stop when validation loss stops improving."""

    patience: int | None = Field(
        default=3,
        ge=1,
        description="Evaluations without improvement before stopping; None = never stop early.",
    )
    min_delta: float = Field(
        default=0.0, ge=0, description="A val loss must drop by more than this to count."
    )


class FeatureCacheConfig(StageConfig):
    """On-disk cache of the frozen vision part's outputs, computed once per image."""

    enabled: bool | None = Field(
        default=None,
        description="None = on whenever the family can split off a frozen part and it stays frozen.",
    )
    dir: Path | None = Field(
        default=None, description="Cache folder (shared across runs); None = ~/.cache/altcap/features."
    )
    batch_size: int | None = Field(
        default=None,
        gt=0,
        description="Images per encode call while the cache fills; None = the training batch size. "
        "Each loader worker prepares a whole call's images, so larger calls wait longer for the first: "
        "64 waited 2.4 s against 0.5-0.6 s at 16 with 4 workers (docs/benchmarks.md, session 13).",
    )


class LaunchConfig(StageConfig):
    """How many processes train; more than one re-runs the command through `accelerate launch`."""

    num_processes: int = Field(
        default=1,
        gt=0,
        description="Training processes, one per GPU (`--gpus`); >1 starts them with `accelerate launch`.",
    )
    accelerate_config: str = Field(
        default="ddp",
        description="Accelerate config for num_processes > 1: a shipped name (ddp, zero2, zero3, fsdp) "
        "or the path of an accelerate YAML.",
    )


class ScstConfig(StageConfig):
    """Self-critical sequence training (Rennie et al. 2017): after cross-entropy, optimise CIDEr-D."""

    samples: int = Field(
        default=5,
        ge=2,
        description="Captions sampled per image; each one's baseline is the mean "
        "reward of the others (Luo 2020), so no greedy pass is needed.",
    )
    max_new_tokens: int = Field(default=40, gt=0, description="Longest sampled caption, in tokens.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature (1 = the model's own).")
    length_reward_weight: float = Field(
        default=0.0,
        ge=0,
        description="Length-aware reward: CIDEr-D + this weight x min(1, caption words / the "
        "references' mean words); 0 = plain CIDEr-D. Counters SCST's shortening of captions; also "
        "used for the validation loss (-mean greedy reward).",
    )


class TrainConfig(StageConfig):
    """`altcap train`: LoRA / QLoRA fine-tuning of a captioning model on a manifest."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model to fine-tune.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training and validation data.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter shape.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Learning-rate schedule.")
    early_stopping: EarlyStoppingConfig = Field(
        default_factory=EarlyStoppingConfig, description="Early stopping on validation loss."
    )
    feature_cache: FeatureCacheConfig = Field(
        default_factory=FeatureCacheConfig, description="Frozen vision feature cache."
    )
    launch: LaunchConfig = Field(
        default_factory=LaunchConfig, description="Process count and accelerate config (multi-GPU)."
    )
    # The names of train/objectives.py's OBJECTIVES (a test keeps them the same); what each one
    # cannot be combined with is checked there, when the run is validated.
    objective: Literal["cross_entropy", "scst"] = Field(
        default="cross_entropy",
        description="cross_entropy: one example per reference caption. scst: one example per image, "
        "reward = CIDEr-D of sampled captions against all its references (idf from the training "
        "split); start it from a cross-entropy model. Validation then reports -CIDEr-D of greedy "
        "captions as val_loss (lower is better, as for a loss).",
    )
    scst: ScstConfig = Field(default_factory=ScstConfig, description="Settings of objective=scst.")
    batch_size: int = Field(default=32, gt=0, description="Examples per micro-batch per device.")
    grad_accum_steps: int = Field(default=2, gt=0, description="Micro-batches per optimizer step.")
    epochs: int = Field(default=4, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(
        default=None,
        gt=0,
        description="Stop after this many optimizer steps (overrides epochs when smaller).",
    )
    precision: Literal["bf16", "fp16", "fp32"] = Field(
        default="bf16", description="Autocast precision; bf16/fp16 fall back to fp32 on CPU (logged)."
    )
    eval_every_n_steps: int | None = Field(
        default=None, gt=0, description="Validate every N optimizer steps; None = at the end of each epoch."
    )
    save_every_n_steps: int = Field(
        default=500, gt=0, description="Write a resumable checkpoint every N optimizer steps."
    )
    log_every_n_steps: int = Field(default=10, gt=0, description="Log loss, lr and throughput every N steps.")
    keep_best: bool = Field(default=True, description="Keep the adapter with the lowest val loss in `best/`.")
    train_vision_blocks: int = Field(
        default=0,
        ge=0,
        description="Also train the vision tower's last N blocks in full (saved with the adapter); "
        "0 = vision frozen. Turns the feature cache off. Families: altcap-mini.",
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in backward to save memory (slower)."
    )
    lean_activations: bool = Field(
        default=True,
        description="Recompute gated-MLP activations and keep RMSNorm inputs in bf16 for backward "
        "instead of autograd's copies (same maths): Qwen2.5-VL-3B LoRA at batch 16 peaked at 32.2 "
        "instead of 37.5 GB, at no cost in speed in runs alternating on and off (H200, session 14; "
        "docs/benchmarks.md). false keeps transformers' layers as they are. Ignored under "
        "gradient_checkpointing or compile.",
    )
    qlora: bool = Field(
        default=False, description="Load the base model in 4-bit NF4 (needs CUDA + bitsandbytes)."
    )
    cuda_graphs: bool = Field(
        default=False,
        description="Replay the language model's forward and backward passes as CUDA graphs (chat "
        "VLMs with graphed_training in `altcap models`; needs CUDA): one capture per batch size and "
        "padded length (lengths rounded up to 32, at most 4 shapes), against the per-step kernel "
        "launches that bound small models' steps. Not with compile or gradient_checkpointing.",
    )
    compile: bool = Field(
        default=False,
        description="torch.compile the model's forward (inductor); the first step is slower while it "
        "compiles (150-190 s for BLIP-2 Flan-T5-XL); dynamic shapes so dynamic padding does not "
        "recompile every step. On an H100 it trained BLIP-2 Flan-T5-XL 2.48x faster than eager at "
        "batch 128, in half the memory (docs/benchmarks.md, session 6).",
    )
    compile_scope: Literal["blocks", "model"] = Field(
        default="blocks",
        description="What `compile` compiles: blocks = each transformer layer that trains (LoRA), in "
        "place, code generated once per distinct layer and reused; model = the whole loss module as one "
        "graph (fuses the few ops outside the layers too; T5-XL's did not compile in 6 minutes).",
    )
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        default="default",
        description="torch.compile mode with `compile`: reduce-overhead adds CUDA graphs (cuts per-step "
        "launch overhead; one graph per distinct padded length, more GPU memory; compile_scope=model "
        "only); max-autotune also "
        "benchmarks kernels (much longer compile).",
    )
    compile_backend: Literal["inductor", "aot_eager", "eager"] = Field(
        default="inductor",
        description="torch.compile backend with `compile`: inductor generates kernels (needs a C++ "
        "compiler on CPU); aot_eager / eager only trace (debugging, fast CPU tests); modes need inductor.",
    )
    seed: int = Field(default=0, description="Seed for weights init, data order and dropout.")
    report_to: Literal["tensorboard", "wandb", "mlflow", "none"] = Field(
        default="tensorboard", description="Metrics backend besides train_log.jsonl."
    )
    output_dir: Path = Field(
        default=Path("runs/train"), description="Run folder (adapter, logs, checkpoints)."
    )
    resume: bool | None = Field(
        default=None, description="Resume from output_dir's checkpoint; None = resume when one exists."
    )
    merge: bool = Field(
        default=False, description="Also save the adapter merged into a full model in `merged/`."
    )
    group_by_length: bool = Field(
        default=False,
        description="Batch training captions of similar length together (sorted within windows of 50 "
        "batches, batches shuffled, the longest first), so little of each batch is padding: compiled "
        "BLIP-2 Flan-T5-XL at batch 384 trained 1.22x faster (padding 14 % of label positions instead "
        "of 59 %; H200, docs/benchmarks.md, session 7).",
    )
    num_workers: int = Field(
        default=0,
        ge=0,
        description="DataLoader worker processes; they also read cached features. On a GPU use 6-8: "
        "compiled BLIP-2 Flan-T5-XL at batch 128 ran 502 samples/s with 6, 354 with 4 (H100s).",
    )

    @model_validator(mode="after")
    def _check_compile_settings(self) -> TrainConfig:
        if self.compile and self.compile_mode == "reduce-overhead" and self.compile_scope == "blocks":
            raise ValueError(
                "compile_mode=reduce-overhead with compile_scope=blocks: CUDA graphs per layer with "
                "autograd crashed the process in its first step (torch 2.11, H100); set "
                "compile_mode=default, or compile_scope=model"
            )
        return self

    @model_validator(mode="after")
    def _check_cuda_graphs_settings(self) -> TrainConfig:
        others = [name for name in ("compile", "gradient_checkpointing") if getattr(self, name)]
        if self.cuda_graphs and others:
            raise ValueError(
                f"cuda_graphs=true with {' and '.join(f'{n}=true' for n in others)}: graphs record the "
                f"plain eager passes; set cuda_graphs=false or {' and '.join(f'{n}=false' for n in others)}"
            )
        return self

    @model_validator(mode="after")
    def _check_cache_vs_trained_parts(self) -> TrainConfig:
        if not self.feature_cache.enabled:
            return self
        trained = []
        if self.lora.include_qformer:
            trained.append("lora.include_qformer=true trains the Q-Former")
        trained += [f"lora.adapt_{part}=true trains the {part} part" for part in self.lora.adapted_parts()]
        if self.train_vision_blocks:
            trained.append(f"train_vision_blocks={self.train_vision_blocks} trains the vision tower")
        if trained:
            raise ValueError(
                f"{' and '.join(trained)}, so its outputs cannot be cached; "
                "set feature_cache.enabled=false (or leave it unset)"
            )
        return self
