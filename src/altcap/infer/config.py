"""Config of `altcap caption`: which model, which images, which generation settings, where to write."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from altcap.config import StageConfig
from altcap.data.context import CONTEXT_TEMPLATE_HELP, DEFAULT_CONTEXT_TEMPLATE, ContextTemplate
from altcap.data.image_settings import DEFAULT_MAX_DECODED_PIXELS, MAX_DECODED_PIXELS_HELP, SKIP_FLAG_HELP
from altcap.models.loading import ModelConfig

# Fields of GenerationConfig that only change how fast the same captions come out.
SPEED_FIELDS = ("cache_implementation", "disable_compile", "cuda_graphs")


class GenerationConfig(StageConfig):
    """Decoding settings; field names are `model.generate`'s own keyword arguments."""

    num_beams: int = Field(default=3, ge=1, description="Beam width (1 = greedy, or plain sampling).")
    length_penalty: float = Field(
        default=1.0, description="Beam score length exponent; >1 favours longer captions."
    )
    max_new_tokens: int = Field(default=40, ge=1, description="Most tokens generated per caption.")
    min_new_tokens: int = Field(default=5, ge=0, description="Fewest tokens generated before EOS is allowed.")
    repetition_penalty: float = Field(
        default=1.0, gt=0, description="Penalty on repeated tokens; 1.0 = none."
    )
    no_repeat_ngram_size: int = Field(
        default=3, ge=0, description="Forbid repeating any n-gram this long; 0 = off."
    )
    do_sample: bool = Field(default=False, description="Sample instead of deterministic beam/greedy search.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature (only with do_sample).")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass (only with do_sample).")
    cache_implementation: Literal["static"] | None = Field(
        default=None,
        description="KV cache: None = transformers' dynamic cache; 'static' preallocates it at full "
        "length, which on CUDA also makes transformers torch.compile the decoder step (CUDA graphs) "
        "unless disable_compile. Speed only: greedy ids equal the dynamic cache's (tested).",
    )
    disable_compile: bool = Field(
        default=False,
        description="With cache_implementation='static', keep the decoder step eager (skip the "
        "compile warm-up, which pays off only over many batches of one shape).",
    )

    cuda_graphs: bool = Field(
        default=False,
        description="Replay each decoder step as a CUDA graph (on CUDA; BLIP-2 / InstructBLIP with a "
        "Flan-T5 LM, and chat VLMs' greedy and sampled steps on a static cache): the same kernels as "
        "eager decoding launched in one call, with transformers' own search around them. Batches are "
        "padded to batch_size. H100, BLIP-2 Flan-T5-XL: 1.46x batched generate greedy, 1.20x with 3 "
        "beams, for 23-35% more GPU memory; chat VLMs: not yet measured on a GPU.",
    )

    @model_validator(mode="after")
    def _check_lengths(self) -> GenerationConfig:
        if self.cuda_graphs and self.cache_implementation is not None:
            raise ValueError(
                "generation.cuda_graphs brings its own KV cache; leave generation.cache_implementation unset"
            )
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"generation.min_new_tokens={self.min_new_tokens} exceeds generation.max_new_tokens="
                f"{self.max_new_tokens}; lower the minimum or raise the maximum"
            )
        return self

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`.

        Sampling knobs are passed only when sampling: transformers warns about them otherwise.
        """
        kwargs = self.model_dump(exclude={"temperature", "top_p", *SPEED_FIELDS})
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return {**kwargs, **self.speed_kwargs()}

    def speed_kwargs(self) -> dict[str, Any]:
        """The `generate` keyword arguments that change speed, not what is decoded; only the ones set.

        Left out of the caption records (so a file can be resumed with another cache) like
        batch_size; provenance keeps the whole config.
        """
        kwargs: dict[str, Any] = {}
        if self.cache_implementation is not None:
            kwargs["cache_implementation"] = self.cache_implementation
            kwargs["disable_compile"] = self.disable_compile
        if self.cuda_graphs:
            kwargs["cuda_graphs"] = True  # read by the family's generate, not transformers
        return kwargs


class CaptionConfig(StageConfig):
    """Everything `altcap caption` needs; give either `manifest` (+ `split`) or `images`."""

    model: ModelConfig = Field(
        default_factory=ModelConfig, description="Base model, adapter, dtype and device."
    )
    manifest: Path | None = Field(default=None, description="Manifest (JSONL from `altcap data`) to caption.")
    split: Literal["train", "val", "test", "all"] | None = Field(
        default="test", description="Manifest split to caption; all (or None) = every record."
    )
    images: Path | None = Field(
        default=None, description="Folder of images to caption (instead of a manifest)."
    )
    out: Path = Field(
        default=Path("captions.jsonl"), description="Captions JSONL; an existing file is resumed."
    )
    prompt: str | None = Field(
        default=None,
        description="Instruction for every image without its own manifest prompt; "
        "None = the family's default.",
    )
    context_template: ContextTemplate = Field(
        default=DEFAULT_CONTEXT_TEMPLATE, description=CONTEXT_TEMPLATE_HELP
    )
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Decoding settings.")
    batch_size: int = Field(
        default=16,
        ge=1,
        description="Images per generate call; on a GPU larger batches (64-256) give more captions/s "
        "until memory runs out (`benchmarks/caption_throughput.py` sweeps it).",
    )
    num_workers: int = Field(
        default=2,
        ge=0,
        description="Processes that decode and preprocess the next batches while the model generates "
        "(torch DataLoader, pinned memory on CUDA); 0 = one background thread instead.",
    )
    limit: int | None = Field(default=None, ge=1, description="Caption only the first N images (quick runs).")
    num_processes: int = Field(
        default=1,
        gt=0,
        description="Captioning processes, one per GPU (`--gpus`); >1 starts them with `accelerate launch`, "
        "each captions a share of the images into `<out>.shard-<rank>.jsonl`, merged into `out` in manifest "
        "order at the end (a rerun folds a killed run's shards in first).",
    )
    accelerate_config: str = Field(
        default="ddp",
        description="Accelerate config for num_processes > 1: a shipped name (ddp, zero2, zero3, fsdp) or "
        "the path of an accelerate YAML (multi-node: `out` must be on a filesystem every node shares).",
    )
    seed: int = Field(default=0, description="Torch seed (matters only with generation.do_sample).")
    skip_unreadable_images: bool = Field(default=False, description=SKIP_FLAG_HELP)
    max_decoded_pixels: int = Field(
        default=DEFAULT_MAX_DECODED_PIXELS, gt=0, description=MAX_DECODED_PIXELS_HELP
    )

    @field_validator("split")
    @classmethod
    def _all_means_every_record(cls, split: str | None) -> str | None:
        return None if split == "all" else split

    @model_validator(mode="after")
    def _check_source(self) -> CaptionConfig:
        if (self.manifest is None) == (self.images is None):
            raise ValueError("give exactly one of `manifest` (with `split`) or `images` (a folder of images)")
        return self

    def record_settings(self) -> dict[str, Any]:
        """The settings stored in every caption record; a resumed file must have the same ones."""
        settings = {k: v for k, v in self.generation.generate_kwargs().items() if k not in SPEED_FIELDS}
        settings["prompt"] = self.prompt
        # Only a changed template is recorded, so files written before it existed still resume.
        if self.context_template != DEFAULT_CONTEXT_TEMPLATE:
            settings["context_template"] = self.context_template
        if self.generation.do_sample:
            settings["seed"] = self.seed
        return settings
