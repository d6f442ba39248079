"""`altcap study init` and `invite`: freeze the design into the database, then create invitations."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from altcap.data.context import read_context
from altcap.data.manifest import ManifestError, read_manifest
from altcap.infer.captions_file import read_captions
from altcap.study.config import StudyConfig, TaskQuestion, load_task_questions
from altcap.study.db import Participant, Study, Trial, utc_now
from altcap.study.design import StudyPlanInputs, TrialPlan, count_latin_rows, plan_participant, plan_verifier
from altcap.study.security import KEY_FILE_NAME, make_private_dir, store_signing_key, write_owner_only
from altcap.study.trials import describe_verifier_items

ROLES = ("participant", "verifier")
ROLE_ID_PREFIX = {"participant": "P", "verifier": "V"}


class StudySetupError(ValueError):
    """A design or run-folder problem; the message names the file or field and the fix."""


@dataclass(frozen=True)
class Invitation:
    """A created participant and the link to give them (the token is not stored anywhere else)."""

    public_id: str
    token: str
    url: str


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path)


def _image_folder(config: StudyConfig, yaml_dir: Path) -> Path:
    if config.image_root is None:
        return yaml_dir
    root = _resolve(yaml_dir, config.image_root)
    # A manifest path means "images are relative to the manifest's folder" (as in data/manifest.py).
    return root.parent if root.is_file() else root


def load_stimuli(config: StudyConfig, yaml_path: Path) -> list[dict[str, str]]:
    """Join base and fine-tuned captions per image and resolve each image file.

    Args:
        config: the study design.
        yaml_path: study.yaml; relative paths in it are relative to its folder.

    Returns:
        One dict per image: image, base, finetuned, path (absolute image file).
    """
    yaml_dir = yaml_path.parent
    problems = [
        f"{yaml_path}: {key} is required (a captions JSONL from `altcap caption`)"
        for key in ("base_captions", "finetuned_captions")
        if getattr(config, key) is None
    ]
    if problems:
        raise StudySetupError("\n".join(problems))
    base = {r.image: r.caption for r in read_captions(_resolve(yaml_dir, config.base_captions))}
    tuned = {r.image: r.caption for r in read_captions(_resolve(yaml_dir, config.finetuned_captions))}
    images = _study_and_practice_images(config, yaml_path, [image for image in base if image in tuned])
    missing = [image for image in images if image not in base or image not in tuned]
    if missing:
        raise StudySetupError(
            f"{yaml_path}: images {missing[:5]} lack a base or fine-tuned caption; "
            "caption them with both models or remove them from `images`"
        )
    if not images:
        raise StudySetupError(f"{yaml_path}: no image has both a base and a fine-tuned caption")
    folder = _image_folder(config, yaml_dir)
    extras = read_image_extras(config, yaml_dir)
    stimuli = [
        {
            "image": image,
            "base": base[image],
            "finetuned": tuned[image],
            "path": str(_resolve(folder, Path(image)).resolve()),
            **({"practice": True} if image in config.practice_images else {}),
            **extras.get(image, {}),
        }
        for image in images
    ]
    absent = [s["image"] for s in stimuli if not Path(s["path"]).is_file()]
    if config.show_image and absent:
        raise StudySetupError(
            f"{yaml_path}: image_root={config.image_root}: {len(absent)} images not found, "
            f"e.g. {absent[:3]} under {folder}; fix image_root or set show_image: false"
        )
    return stimuli


def read_image_extras(config: StudyConfig, yaml_dir: Path) -> dict[str, dict[str, object]]:
    """Per image key, its manifest `context` and `quality_flags` (only those the record has).

    Args:
        config: the study design (`manifest`, else `image_root` when it is a manifest file).
        yaml_dir: study.yaml's folder (relative paths start there).

    Returns:
        {image: {"context": str, "quality_flags": [...]}}; empty without a manifest.
    """
    root_is_manifest = config.image_root is not None and config.image_root.suffix == ".jsonl"
    path = config.manifest or (config.image_root if root_is_manifest else None)
    if path is None:
        return {}
    path = _resolve(yaml_dir, path)
    if not path.is_file() and config.manifest is None:
        return {}  # a folder that happens to end in .jsonl: nothing to read
    try:
        records = read_manifest(path)
    except ManifestError as err:
        raise StudySetupError(f"manifest: {err}") from err
    extras: dict[str, dict[str, object]] = {}
    for record in records:
        found: dict[str, object] = {}
        if (context := read_context(record)) is not None:
            found["context"] = context
        if "quality_flags" in record.metadata:
            found["quality_flags"] = [str(f) for f in record.metadata["quality_flags"] or []]
        extras[record.image] = found
    return extras


def _study_and_practice_images(config: StudyConfig, yaml_path: Path, captioned: list[str]) -> list[str]:
    """The study images (practice ones removed), then the practice images."""
    overlap = [image for image in config.practice_images if image in (config.images or [])]
    if overlap:
        raise StudySetupError(
            f"{yaml_path}: practice_images {overlap[:3]} are also in `images`; a practice image must "
            "never come back as a real trial, so remove it from one of the two lists"
        )
    wanted = config.images or captioned
    images = [image for image in wanted if image not in config.practice_images] + config.practice_images
    if config.practice_images and len(images) == len(config.practice_images):
        raise StudySetupError(f"{yaml_path}: every image is a practice image; leave some for the study")
    return images


def load_questions_for(config: StudyConfig, yaml_path: Path, images: list[str]) -> list[TaskQuestion]:
    """The design's task questions, checked to refer to study images."""
    if config.questions is None:
        return []
    path = _resolve(yaml_path.parent, config.questions)
    questions = load_task_questions(path)
    unknown = [q.question_id for q in questions if q.image not in images]
    if unknown:
        raise StudySetupError(f"{path}: questions {unknown[:5]} name images that are not in the study")
    return questions


def write_admin_secret(run_dir: Path) -> str:
    """Create run_dir/admin_secret.txt (owner-only) and return the secret."""
    secret = secrets.token_urlsafe(24)
    write_owner_only(run_dir / "admin_secret.txt", secret + "\n")
    return secret


def freeze_study(db: Session, config: StudyConfig, yaml_path: Path, run_dir: Path) -> Study:
    """Store the design (yaml text + sha256), captions and questions; write frozen copies to run_dir.

    Args:
        db: session on an upgraded database.
        config: the validated design.
        yaml_path: the study.yaml it came from (copied verbatim).
        run_dir: run folder; gets study.frozen.yaml, study.json and admin_secret.txt.

    Returns:
        The stored Study row.
    """
    existing = db.scalars(select(Study)).first()
    if existing is not None:
        raise StudySetupError(
            f"{run_dir}: database already holds study {existing.study_id!r} frozen at "
            f"{existing.frozen_at}; use a new --run-dir (or --db) for a new design"
        )
    stimuli = load_stimuli(config, yaml_path)
    questions = load_questions_for(config, yaml_path, [s["image"] for s in stimuli if not s.get("practice")])
    text = yaml_path.read_text(encoding="utf-8")
    make_private_dir(run_dir)
    for name in ("admin_secret.txt", KEY_FILE_NAME):
        if (run_dir / name).exists():
            raise StudySetupError(f"{run_dir}/{name} exists from another study; use a new --run-dir")
    study = Study(
        study_id=config.study_id,
        design_yaml=text,
        design_sha256=hashlib.sha256(text.encode()).hexdigest(),
        frozen_at=utc_now(),
        stimuli_json=json.dumps(stimuli),
        questions_json=json.dumps([q.model_dump() for q in questions]),
        admin_secret_sha256="",
    )
    store_signing_key(run_dir / KEY_FILE_NAME, secrets.token_urlsafe(32))
    secret = write_admin_secret(run_dir)
    study.admin_secret_sha256 = hashlib.sha256(secret.encode()).hexdigest()
    db.add(study)
    db.commit()
    (run_dir / "study.frozen.yaml").write_text(text, encoding="utf-8")
    (run_dir / "study.json").write_text(json.dumps(describe_design(study), indent=2), encoding="utf-8")
    return study


def describe_design(study: Study) -> dict:
    """study.json content: the design, its sha256, when it was frozen, and the frozen answer keys.

    `task_questions` (the questions with their answer keys, as frozen) lets the analysis tell a
    question the image cannot answer (key `not_stated`) from one the caption failed to answer;
    `verifier_items` documents the sighted verifiers' questions and scale.
    """
    return {
        **(yaml.safe_load(study.design_yaml) or {}),
        "design_sha256": study.design_sha256,
        "frozen_at": study.frozen_at,
        "task_questions": json.loads(study.questions_json),
        "verifier_items": describe_verifier_items(),
    }


def plan_inputs(study: Study) -> StudyPlanInputs:
    """The assignment inputs of a frozen study."""
    config = StudyConfig.model_validate(yaml.safe_load(study.design_yaml) or {})
    questions = [TaskQuestion.model_validate(q) for q in json.loads(study.questions_json)]
    stimuli = json.loads(study.stimuli_json)
    return StudyPlanInputs(
        images=[s["image"] for s in stimuli if not s.get("practice")],
        practice_images=[s["image"] for s in stimuli if s.get("practice")],
        question_ids=[q.question_id for q in questions],
        question_images={q.question_id: q.image for q in questions},
        n_practice_trials=config.n_practice_trials,
        attention_checks=config.attention_checks,
        has_ratings=bool(config.likert_items),
        seed=config.seed,
    )


def create_invitations(
    db: Session, n: int, base_url: str, valid_days: int = 90, role: str = "participant"
) -> list[Invitation]:
    """Create n participants (or sighted verifiers) with their seeded trial plans; return their links.

    Args:
        db: session on an initialised database.
        n: number of invitations.
        base_url: URL prefix of the links (no trailing slash).
        valid_days: days until a link expires.
        role: "participant" (ids P001..., Latin-square trials) or "verifier" (ids V001..., one verify
            trial per caption).

    Returns:
        The invitations in creation order.
    """
    if role not in ROLES:
        raise StudySetupError(f"role={role!r} is not known; use one of {', '.join(ROLES)}")
    study = db.scalars(select(Study)).first()
    if study is None:
        raise StudySetupError("no study in this database; run `altcap study init study.yaml` first")
    config = StudyConfig.model_validate(yaml.safe_load(study.design_yaml) or {})
    if role == "verifier":
        check_verifier_images(study)
    inputs = plan_inputs(study)
    contexts = {s["image"]: s.get("context") for s in json.loads(study.stimuli_json)}
    start = db.scalar(select(func.count()).select_from(Participant).where(Participant.role == role)) or 0
    expires = (datetime.now(UTC) + timedelta(days=valid_days)).isoformat(timespec="milliseconds")
    invitations = []
    for index in range(start, start + n):
        token = secrets.token_urlsafe(24)
        participant = Participant(
            study_id=study.study_id,
            participant_index=index,
            public_id=f"{ROLE_ID_PREFIX[role]}{index + 1:03d}",
            token_sha256=hash_token(token),
            status="active",
            # Verifiers' order is a seeded shuffle, not a Latin-square row (-1 = none; exported empty).
            latin_square_row=index % count_latin_rows(inputs) if role == "participant" else -1,
            invited_at=utc_now(),
            expires_at=expires,
            completion_code=config.completion_code or "",
            role=role,
        )
        db.add(participant)
        db.flush()
        plans = plan_participant(inputs, index) if role == "participant" else plan_verifier(inputs, index)
        _add_trials(db, participant.id, plans, contexts)
        invitations.append(Invitation(participant.public_id, token, f"{base_url}/p/{token}"))
    db.commit()
    return invitations


def check_verifier_images(study: Study) -> None:
    """Verifiers judge captions against the image, so every image file must exist on this server."""
    absent = [s["image"] for s in json.loads(study.stimuli_json) if not Path(s["path"]).is_file()]
    if absent:
        raise StudySetupError(
            f"{len(absent)} study images are not on this server, e.g. {absent[:3]} (looked at the paths "
            "frozen from image_root); verifiers must see the images: put them back, then invite again"
        )


def _add_trials(
    db: Session, participant_id: int, plans: list[TrialPlan], contexts: dict[str, str | None]
) -> None:
    for trial_index, plan in enumerate(plans):
        db.add(
            Trial(
                participant_id=participant_id,
                trial_index=trial_index,
                kind=plan.kind,
                image=plan.image,
                question_id=plan.question_id,
                base_position=plan.base_position,
                task_system=plan.task_system,
                attention_index=plan.attention_index,
                context=contexts.get(plan.image),
            )
        )


def hash_token(token: str) -> str:
    """sha256 of an invitation token (what the database stores)."""
    return hashlib.sha256(token.encode()).hexdigest()
