"""Shared helpers of the study tests: a tiny study on disk, and a form filler that reads the HTML."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import yaml
from PIL import Image

from altcap.study.commands import run_init
from altcap.study.config import StudyConfig, StudySiteConfig
from altcap.study.db import make_engine, make_session_factory
from altcap.study.freeze import create_invitations

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SQLI = "'); DROP TABLE answer; --"


@dataclass
class StudyFixture:
    """A frozen study with invitations."""

    run_dir: Path
    db_url: str
    tokens: list[str]
    admin_secret: str
    captions: dict[str, tuple[str, str]]


def build_design() -> dict:
    """The study.yaml content of the test study (two Likert items, one attention check)."""
    return {
        "study_id": "test-study",
        "title": "Photo description study",
        "base_captions": "base.jsonl",
        "finetuned_captions": "finetuned.jsonl",
        "image_root": ".",
        "completion_code": "DONE-42",
        "likert_items": [
            {
                "id": "usefulness",
                "question": "How useful is this description?",
                "anchors": {1: "Not useful", 7: "Very useful"},
            },
            {
                "id": "detail",
                "question": "How detailed is it?",
                "scale_max": 5,
                "anchors": {1: "Too little", 5: "Plenty"},
            },
        ],
        "attention_checks": [
            {
                "after_trial": 2,
                "question": "To show you are reading, choose Blue.",
                "choices": ["Red", "Blue", "Green"],
                "answer": "Blue",
            }
        ],
    }


def write_study_files(
    folder: Path, n_images: int = 4, with_questions: bool = True, contexts: dict[str, str] | None = None
) -> Path:
    """Images, base/fine-tuned captions, task questions and a study.yaml; returns the yaml path.

    `contexts` (image -> where it appears) go into a manifest the design names (issue #29).
    """
    (folder / "images").mkdir(parents=True, exist_ok=True)
    base_lines, tuned_lines = [], []
    for i in range(n_images):
        Image.new("RGB", (64, 48), (40 * i % 255, 120, 200)).save(folder / "images" / f"img{i}.png")
        base_lines.append(
            {"image": f"images/img{i}.png", "caption": f"BASECAP {i}: a photo.", "model_id": "m"}
        )
        tuned_lines.append(
            {
                "image": f"images/img{i}.png",
                "caption": f"TUNEDCAP {i}: two dogs on grass.",
                "model_id": "m",
                "adapter": "lora",
            }
        )
    for name, lines in (("base.jsonl", base_lines), ("finetuned.jsonl", tuned_lines)):
        (folder / name).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    design = build_design()
    if with_questions:
        (folder / "questions.csv").write_text(
            "question_id,image,question,kind,choices,answer,accepted\n"
            "q1,images/img0.png,How many dogs are there?,number,,2,two\n"
            "q2,images/img1.png,What is the ground?,choice,grass|sand|snow,grass,\n",
            encoding="utf-8",
        )
        design["questions"] = "questions.csv"
    if contexts:
        rows = [{"image": i, "captions": ["x"], "metadata": {"context": c}} for i, c in contexts.items()]
        (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        design["manifest"] = "manifest.jsonl"
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False), encoding="utf-8")
    return path


def make_study(folder: Path, n_participants: int = 3, db_url: str | None = None, **file_args) -> StudyFixture:
    """Write the files, init the study and create invitations."""
    yaml_path = write_study_files(folder / "design", **file_args)
    config = StudyConfig.model_validate(yaml.safe_load(yaml_path.read_text()))
    site = StudySiteConfig(run_dir=folder / "run", db=db_url)
    secret = run_init(config, yaml_path, site)
    with make_session_factory(make_engine(site.resolve_db_url()))() as db:
        invitations = create_invitations(db, n_participants, "http://testserver")
    captions = {
        f"images/img{i}.png": (f"BASECAP {i}: a photo.", f"TUNEDCAP {i}: two dogs on grass.")
        for i in range(file_args.get("n_images", 4))
    }
    return StudyFixture(site.run_dir, site.resolve_db_url(), [i.token for i in invitations], secret, captions)


@dataclass
class ParsedForm:
    """The first POST form of a page: action, hidden fields, radio groups, text fields."""

    action: str = ""
    hidden: dict[str, str] = field(default_factory=dict)
    radios: dict[str, list[str]] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    checkboxes: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form: ParsedForm | None = None
        self.done = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form" and self.form is None and a.get("method") == "post":
            self.form = ParsedForm(action=a.get("action", ""))
        if self.form is None or self.done:
            return
        if tag == "input":
            kind, name = a.get("type", "text"), a.get("name", "")
            if kind == "hidden":
                self.form.hidden[name] = a.get("value", "")
            elif kind == "radio":
                self.form.radios.setdefault(name, []).append(a.get("value", ""))
            elif kind == "checkbox":
                self.form.checkboxes[name] = a.get("value", "")
            elif kind == "text":
                self.form.texts.append(name)
        elif tag == "textarea":
            self.form.texts.append(a.get("name", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.form is not None:
            self.done = True


def parse_form(html: str) -> ParsedForm:
    """The first POST form in the page."""
    parser = _FormParser()
    parser.feed(html)
    assert parser.form is not None, "page has no POST form"
    return parser.form


def fill_form(form: ParsedForm, comment: str = "") -> dict[str, str]:
    """Answers for any page: consent ticked, middle scale points, first choices, a typed answer."""
    data = dict(form.hidden)
    data.update({name: value for name, value in form.checkboxes.items() if name == "agree"})
    for name, values in form.radios.items():
        data[name] = values[len(values) // 2] if name not in ("answer", "preference") else values[0]
    if "answer_text" in form.texts:
        data["answer_text"] = "two"
    if "comment" in form.texts:
        data["comment"] = comment
    return data


def trial_index_of(url: str) -> int | None:
    """Trial index in a /p/<token>/trial/<i> URL."""
    match = re.search(r"/trial/(\d+)", url)
    return int(match.group(1)) if match else None
