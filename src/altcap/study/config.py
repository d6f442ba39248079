"""The study design (`study.yaml`), the server settings, and the task-question file.

study.yaml keys are fixed by the interface schema (the analysis stage reads them too); server-only
settings (database URL, run folder, host, port) live in `StudySiteConfig` so the frozen design never
depends on where it is served from.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from altcap.config import StageConfig
from altcap.study.scoring import NOT_STATED

QUESTION_COLUMNS = ("question_id", "image", "question", "kind", "choices", "answer", "accepted")


class LikertItem(BaseModel):
    """One rating scale shown for each caption."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Item id written to the export (`usefulness`, `detail`, ...).")
    question: str = Field(description="The question the participant answers for each description.")
    scale_max: int = Field(default=7, ge=2, le=11, description="Highest scale point; scale is 1..scale_max.")
    anchors: dict[int, str] = Field(
        default_factory=dict, description="Labels of scale points, e.g. {1: ..., 7: ...}."
    )

    @model_validator(mode="after")
    def _check_anchors(self) -> LikertItem:
        bad = [k for k in self.anchors if not 1 <= k <= self.scale_max]
        if bad:
            raise ValueError(f"likert item {self.id!r}: anchors {bad} outside 1..{self.scale_max}")
        return self


def default_likert_items() -> list[LikertItem]:
    """The default item: perceived usefulness, 1-7, labelled ends."""
    return [
        LikertItem(
            id="usefulness",
            question="How useful is this description to you?",
            anchors={1: "Not at all useful", 4: "Somewhat useful", 7: "Extremely useful"},
        )
    ]


class AttentionCheck(BaseModel):
    """An instructed-response question inserted after a given main trial."""

    model_config = ConfigDict(extra="forbid")

    after_trial: int = Field(ge=1, description="Shown after this many main trials (1-based).")
    question: str = Field(description="The question, e.g. 'To show you are reading, choose Blue.'")
    choices: list[str] = Field(min_length=2, description="Answer options.")
    answer: str = Field(description="The correct option; must be one of `choices`.")

    @model_validator(mode="after")
    def _check_answer(self) -> AttentionCheck:
        if self.answer not in self.choices:
            raise ValueError(f"attention check answer {self.answer!r} is not one of choices {self.choices}")
        return self


class DecisionRule(BaseModel):
    """study.yaml `decision_rule` (frozen with the design before the first participant)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="One-sided significance level of the primary test."
    )
    min_median_gain: float = Field(
        default=0.5, description="Minimum median per-participant usefulness gain (Likert points)."
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["CIDEr-D", "SPICE"],
        description="Automatic metrics whose 95% CI must be > 0.",
    )
    max_hallucination_increase: float = Field(
        default=0.05, description="Largest allowed rise in the verifier hallucination rate (proportion)."
    )
    max_task_accuracy_drop: float = Field(default=0.05, description="Largest allowed drop in task accuracy.")


class StudyConfig(StageConfig):
    """study.yaml: the blinded comparison of base and fine-tuned captions."""

    study_id: str = Field(default="altcap-study", pattern=r"^[A-Za-z0-9_.-]+$", description="Study id.")
    title: str = Field(default="Image description study", description="Title shown to participants.")
    base_captions: Path | None = Field(
        default=None, description="Base model captions JSONL (altcap caption)."
    )
    finetuned_captions: Path | None = Field(default=None, description="Fine-tuned captions JSONL.")
    images: list[str] | None = Field(
        default=None, description="Images to use; default all images in both files."
    )
    image_root: Path | None = Field(
        default=None, description="Folder images are served from, or the manifest."
    )
    manifest: Path | None = Field(
        default=None,
        description="Manifest whose records' `metadata.context` (where the image appears; shown above the "
        "captions) and `metadata.quality_flags` (from `altcap data check`) the study carries into its trials "
        "and export, matched by the captions' image key; None = image_root when that is a manifest file.",
    )
    likert_items: list[LikertItem] = Field(default_factory=default_likert_items, description="Rating items.")
    n_practice_trials: int = Field(default=1, ge=0, le=3, description="Practice trials before the real ones.")
    practice_images: list[str] = Field(
        default_factory=list,
        description="Images (captioned in both files) set aside for the practice trials: never shown in a "
        "task, rating or verify trial. Empty = a shipped neutral example (a mug on a table) with two "
        "fixed descriptions.",
    )
    attention_checks: list[AttentionCheck] = Field(default_factory=list, description="Attention checks.")
    show_image: bool = Field(default=True, description="Show the image on rating trials (low-vision users).")
    completion_code: str | None = Field(default=None, description="Code shown on the thank-you page.")
    seed: int = Field(default=0, description="Seed of the trial order and caption positions.")
    decision_rule: DecisionRule = Field(
        default_factory=DecisionRule, description="Pre-registered decision rule."
    )
    questions: Path | None = Field(default=None, description="Task-questions CSV/YAML (issue #14); optional.")

    @field_validator("likert_items")
    @classmethod
    def _unique_items(cls, items: list[LikertItem]) -> list[LikertItem]:
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            raise ValueError(f"likert_items ids must be unique, got {ids}")
        return items


class StudySiteConfig(StageConfig):
    """Where a study runs: run folder, database and address (not part of the frozen design)."""

    run_dir: Path = Field(
        default=Path("study_run"), description="Folder with the frozen design and SQLite DB."
    )
    db: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite in run_dir/study.db.")
    host: str = Field(default="127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `serve` listens on.")
    base_url: str | None = Field(default=None, description="Public URL used in invitation links.")
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="Comma-separated IPs (or *) of the TLS proxy whose X-Forwarded-Proto/-For headers "
        "`serve` trusts, as uvicorn's --forwarded-allow-ips; default uvicorn's (127.0.0.1). Requests "
        "whose scheme is then https get Secure cookies and HSTS.",
    )
    admin_login_failures_per_client: str = Field(
        default="10/15 minutes",
        description="Failed admin sign-ins allowed per client address (limits notation); the next "
        "attempt gets HTTP 429 until the window moves on.",
    )
    admin_login_failures_total: str = Field(
        default="50/15 minutes",
        description="Failed admin sign-ins allowed from all clients together (the admin account's "
        "limit; participants are never affected by it).",
    )
    token_failures_per_client: str = Field(
        default="30/minute",
        description="Unknown participant links allowed per client address before its link requests "
        "get HTTP 429 (per client only, so one attacker cannot lock other participants out).",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request body accepted (declared or streamed); larger ones get HTTP 413 "
        "before anything is stored. The study's biggest form, a 5,000-character comment, fits.",
    )

    @field_validator(
        "admin_login_failures_per_client", "admin_login_failures_total", "token_failures_per_client"
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as err:
            raise ValueError(
                f"{value!r} is not a rate limit; write e.g. '10/15 minutes' or '30/minute'"
            ) from err
        return value

    def resolve_db_url(self) -> str:
        """The database URL: `db` if given, else SQLite inside `run_dir`."""
        return self.db or f"sqlite:///{(self.run_dir / 'study.db').resolve()}"

    def resolve_base_url(self) -> str:
        """The URL prefix of invitation links (no trailing slash)."""
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")


class TaskQuestion(BaseModel):
    """A caption-only question with its answer key (issue #14)."""

    model_config = ConfigDict(extra="forbid")

    question_id: str = Field(description="Unique id, e.g. img12-q1.")
    image: str = Field(description="Image path exactly as in the captions files.")
    question: str = Field(description="What the participant must answer from the description alone.")
    kind: Literal["choice", "number", "text"] = Field(default="choice", description="Answer format.")
    choices: list[str] = Field(default_factory=list, description="Options for kind=choice.")
    answer: str = Field(description="The correct answer, or `not_stated` if the image does not show it.")
    accepted: list[str] = Field(default_factory=list, description="Other accepted spellings of the answer.")

    @model_validator(mode="after")
    def _check_choices(self) -> TaskQuestion:
        if self.kind == "choice" and len(self.choices) < 2:
            raise ValueError("kind=choice needs at least two choices (separate them with | in CSV)")
        if self.kind == "choice" and self.answer not in [*self.choices, NOT_STATED]:
            raise ValueError(f"answer {self.answer!r} is not one of choices {self.choices} or {NOT_STATED!r}")
        return self


class QuestionsFileError(ValueError):
    """A task-questions file that cannot be used; names file, row and field."""


def _split_bar(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split("|") if part.strip()]


def _read_question_rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            {**row, "choices": _split_bar(row.get("choices")), "accepted": _split_bar(row.get("accepted"))}
            for row in rows
        ]
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(data, list):
        raise QuestionsFileError(f"{path}: expected a YAML list of questions, got {type(data).__name__}")
    return data


def load_task_questions(path: Path) -> list[TaskQuestion]:
    """Read and validate a task-questions CSV or YAML file.

    Args:
        path: `.csv` (columns QUESTION_COLUMNS, `|`-separated lists) or `.yaml`/`.yml` (list of mappings).

    Returns:
        The questions in file order.

    Raises:
        QuestionsFileError: listing every bad row with its number, field and value.
    """
    if not path.is_file():
        raise QuestionsFileError(
            f"{path}: questions file not found; write one with `altcap study questions --template`"
        )
    problems: list[str] = []
    questions: list[TaskQuestion] = []
    for row_no, row in enumerate(_read_question_rows(path), start=1):
        try:
            questions.append(
                TaskQuestion.model_validate({k: v for k, v in row.items() if v not in (None, "")})
            )
        except ValidationError as err:
            fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in err.errors())
            problems.append(f"{path}: question {row_no}: {fields}")
    ids = [q.question_id for q in questions]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        problems.append(f"{path}: duplicate question_id {dupes}; make each id unique")
    if problems:
        raise QuestionsFileError("\n".join(problems))
    return questions


def write_questions_template(path: Path, images: list[str]) -> None:
    """Write a starter questions CSV (one example row per image) for the researcher to edit.

    Args:
        path: the CSV to create; an existing file is never overwritten.
        images: image paths to prefill (at most the first 3 are used for examples).
    """
    if path.exists():
        raise QuestionsFileError(f"{path}: already exists; choose another path so your edits are not lost")
    examples = images[:3] or ["images/example.jpg"]
    rows = [
        {
            "question_id": f"q{i + 1}",
            "image": image,
            "question": [
                "What colour is the main person's shirt?",
                "How many people are there?",
                "What does the sign say?",
            ][i % 3],
            "kind": ["choice", "number", "text"][i % 3],
            "choices": "red|blue|green|white|black" if i % 3 == 0 else "",
            "answer": ["blue", "2", "open"][i % 3],
            "accepted": ["", "two", "opened|we are open"][i % 3],
        }
        for i, image in enumerate(examples)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=QUESTION_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
