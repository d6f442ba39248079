"""Issue #29 end to end: a CSV `context` column -> manifest -> a tiny chat model's caption prompt ->
the study page -> the export -> the analysis stratum -> the memo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image
from test_routes import complete_session

import altcap.infer.batches as batches_module
from altcap.analysis.commands import AnalysisConfig, run_analyze
from altcap.data.configs import DataImportConfig
from altcap.data.importer import run_data_import
from altcap.infer.caption import run_caption
from altcap.infer.config import CaptionConfig, GenerationConfig
from altcap.models.loading import ModelConfig
from altcap.models.tiny_chat import build_tiny_chat_model
from altcap.report.commands import MemoConfig, run_memo
from altcap.study.app import create_app
from altcap.study.commands import run_init
from altcap.study.config import StudyConfig, StudySiteConfig
from altcap.study.db import make_engine, make_session_factory
from altcap.study.export import write_export
from altcap.study.freeze import create_invitations

pytestmark = pytest.mark.slow  # captioning, a study with 6 participants, WeasyPrint: ~17 s on 2 cores
CONTEXT = "news article about a flood"


def import_csv(folder: Path) -> Path:
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 30), (50 * i, 120, 200)).save(folder / f"img{i}.png")
    (folder / "data.csv").write_text(
        "image,caption,context,split\n"
        f"img0.png,a dog runs on the grass,{CONTEXT},test\n"
        "img1.png,a cat sleeps on a couch,shopping listing,test\n"
        "img2.png,a man rides a bicycle,,test\n"
        "img3.png,two children play on the beach,,test\n",
        encoding="utf-8",
    )
    run_data_import(DataImportConfig(format="csv", source=folder / "data.csv", out_dir=folder))
    return folder / "manifest.jsonl"


def caption_with_prompts(manifest: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Caption with a tiny Qwen2.5-VL; returns the decoded prompt tokens of every batch."""
    seen: list[str] = []
    prepare = batches_module._prepare_batch

    def spy(family, processor, batch, default_prompt, float_dtype=None):
        inputs = prepare(family, processor, batch, default_prompt, float_dtype)
        seen.extend(processor.tokenizer.batch_decode(inputs["input_ids"]))
        return inputs

    monkeypatch.setattr(batches_module, "_prepare_batch", spy)
    model = build_tiny_chat_model("qwen2_5_vl", out.parent / "qwen")
    generation = GenerationConfig(num_beams=1, max_new_tokens=4, min_new_tokens=1)
    run_caption(CaptionConfig(
        model=ModelConfig(model_id=str(model), device="cpu"), manifest=manifest, out=out,
        generation=generation, batch_size=4, num_workers=0,
    ))  # fmt: skip
    return seen


def run_study(root: Path, manifest: Path, base: Path) -> tuple[Path, list[str]]:
    """A study over the captions (image_root = the manifest); 6 participants; returns export dir, pages."""
    tuned = root / "finetuned.jsonl"  # a stand-in second system: the base captions, reworded
    records = [json.loads(line) for line in base.read_text().splitlines()]
    tuned.write_text("".join(json.dumps(r | {"caption": "TUNED " + r["caption"]}) + "\n" for r in records))
    design = {"base_captions": str(base), "finetuned_captions": str(tuned), "image_root": str(manifest)}
    yaml_path = root / "study.yaml"
    yaml_path.write_text(yaml.safe_dump(design))
    site = StudySiteConfig(run_dir=root / "run")
    run_init(StudyConfig.model_validate(design), yaml_path, site)
    factory = make_session_factory(make_engine(site.resolve_db_url()))
    with factory() as db:
        tokens = [i.token for i in create_invitations(db, 6, "http://testserver")]
    pages: list[str] = []
    with TestClient(create_app(site), follow_redirects=False) as client:
        for token in tokens:
            pages += complete_session(client, token)
    with factory() as db:
        write_export(db, {"usefulness", "clarity"}, root / "export")
    return root / "export", pages


def test_context_flows_from_csv_to_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = import_csv(tmp_path / "data")
    prompts = caption_with_prompts(manifest, tmp_path / "base.jsonl", monkeypatch)
    assert sum(f"This image appears in: {CONTEXT}\n" in p for p in prompts) == 1
    assert sum("This image appears in:" in p for p in prompts) == 2  # img2, img3 have none
    export, pages = run_study(tmp_path, manifest, tmp_path / "base.jsonl")
    assert any("Where this image appears" in p and CONTEXT in p for p in pages)
    responses = json.loads((export / "responses.json").read_text())
    contexts = {r["context"] for r in responses if r["trial_kind"] == "rating"}
    assert contexts == {CONTEXT, "shopping listing", ""}
    analysis = json.loads(
        run_analyze(AnalysisConfig(export_dir=export, out=tmp_path / "analysis", n_boot=200)).read_text()
    )
    groups = analysis["by_context"]["groups"]
    assert list(groups) == [CONTEXT, "shopping listing", "(no context)"]
    assert groups["(no context)"]["n_images"] == 2 and groups[CONTEXT]["n_pairs"] == 6
    assert "## Ratings by context" in (tmp_path / "analysis" / "analysis.md").read_text()
    run_memo(MemoConfig(analysis=tmp_path / "analysis" / "analysis.json", out=tmp_path / "memo"))
    memo = (tmp_path / "memo" / "memo.md").read_text()
    assert "### Usefulness by context (where the image appears)" in memo and f"| {CONTEXT} | 1 |" in memo
