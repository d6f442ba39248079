"""`altcap demo-ui`: config checks, both captioners, the page, and the served app on a tiny BLIP-2."""

from __future__ import annotations

import inspect
import socket
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from altcap.cli import app
from altcap.config import field_paths
from altcap.infer.config import GenerationConfig
from altcap.infer.demo_ui import (
    FLAG_FIELDS,
    LIVE_REGION_ID,
    NO_ADAPTER_NOTE,
    DemoModels,
    DemoUIConfig,
    build_demo,
    demo_ui_command,
    describe_image,
    launch_demo,
    load_demo_models,
)
from altcap.models.loading import ModelConfig, ModelLoadError, apply_lora, load_model

GENERATION = GenerationConfig(num_beams=1, max_new_tokens=6, min_new_tokens=4)


@pytest.fixture(scope="module")
def gr() -> ModuleType:
    """gradio, imported by the tests that look at its blocks rather than at collection (~3.5 s)."""
    import gradio

    return gradio


@pytest.fixture(scope="module")
def tiny_adapter(tiny_blip2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with non-zero B matrices, so the fine-tuned model really differs from the base."""
    import torch

    model, _, family = load_model(ModelConfig(model_id=str(tiny_blip2), device="cpu"))
    peft_model = apply_lora(model, family, None, r=4, alpha=8, dropout=0.0)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=2.0)
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder)
    return folder


def make_config(model: Path, adapter: Path | None, **changes) -> DemoUIConfig:
    return DemoUIConfig(
        model=ModelConfig(model_id=str(model), device="cpu"),
        adapter=adapter,
        generation=GENERATION,
        **changes,
    )


@pytest.fixture(scope="module")
def demo_models(tiny_blip2: Path, tiny_adapter: Path) -> DemoModels:
    return load_demo_models(make_config(tiny_blip2, tiny_adapter))


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))


def test_describe_gives_two_captions_from_two_models(demo_models: DemoModels, photo: Image.Image) -> None:
    base, tuned, status = describe_image(demo_models, photo)
    assert base.strip() and tuned.strip()
    assert base != tuned  # the adapter's non-zero LoRA weights change the output
    assert status.startswith("Captions ready")
    assert demo_models.tuned is not None and type(demo_models.tuned.model).__name__ == "PeftModel"
    assert type(demo_models.base.model).__name__ != "PeftModel"


@pytest.mark.slow
def test_describe_accepts_gradio_payload_and_path(
    demo_models: DemoModels, photo: Image.Image, tmp_path: Path
) -> None:
    path = tmp_path / "photo.png"
    photo.save(path)
    from_pil = describe_image(demo_models, photo)
    assert describe_image(demo_models, str(path)) == from_pil
    assert describe_image(demo_models, {"path": str(path), "orig_name": "mine.png"}) == from_pil


def test_describe_reports_bad_uploads_by_name(demo_models: DemoModels, tmp_path: Path) -> None:
    notes = tmp_path / "upload-123.txt"
    notes.write_text("not a picture", encoding="utf-8")
    base, tuned, status = describe_image(demo_models, {"path": str(notes), "orig_name": "notes.txt"})
    assert (base, tuned) == ("", "")
    assert status.startswith("Error: 'notes.txt' is not an image") and "JPEG, PNG or WebP" in status
    assert describe_image(demo_models, None)[2].startswith("Error: No image yet")


def test_base_only_without_adapter(tiny_blip2: Path, photo: Image.Image, gr: ModuleType) -> None:
    cfg = make_config(tiny_blip2, None)
    models = load_demo_models(cfg)
    base, tuned, status = describe_image(models, photo)
    assert base.strip() and tuned == "" and status == "Base model caption ready."
    demo = build_demo(cfg, models)
    markdown = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any(NO_ADAPTER_NOTE in text for text in markdown)
    columns = [block for block in demo.blocks.values() if isinstance(block, gr.Column)]
    assert [column.visible for column in columns].count(False) == 1  # the fine-tuned column is hidden


def test_build_demo_page_is_labelled(
    tiny_blip2: Path, tiny_adapter: Path, demo_models: DemoModels, gr: ModuleType
) -> None:
    demo = build_demo(make_config(tiny_blip2, tiny_adapter), demo_models)
    assert isinstance(demo, gr.Blocks)
    blocks = list(demo.blocks.values())
    image = next(block for block in blocks if isinstance(block, gr.Image))
    assert image.label and "Image to describe" in image.label
    labels = {block.label for block in blocks if isinstance(block, gr.Textbox)}
    assert {"Base model caption", "Fine-tuned model caption", "Status"} <= labels
    templates = " ".join(block.html_template for block in blocks if isinstance(block, gr.HTML))
    assert 'aria-label="Read the base model caption aloud"' in templates
    assert 'aria-label="Read the fine-tuned model caption aloud"' in templates
    assert f'id="{LIVE_REGION_ID}" role="status" aria-live="polite"' in templates
    markdown = " ".join(block.value for block in blocks if isinstance(block, gr.Markdown))
    assert "machine generated" in markdown and str(tiny_adapter) in markdown


def test_missing_adapter_fails_before_loading(tiny_blip2: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-adapter"
    with pytest.raises(ModelLoadError, match=r"adapter=.*no-such-adapter.*folder not found"):
        load_demo_models(make_config(tiny_blip2, missing))
    result = CliRunner().invoke(app, ["demo-ui", "--model-id", str(tiny_blip2), "--adapter", str(missing)])
    output = result.output.replace("\n", "")  # rich wraps long lines, even inside a path
    assert result.exit_code == 2
    assert str(missing) in output and "folder not found" in output


def test_adapter_inside_model_config_is_refused(tiny_blip2: Path, tiny_adapter: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo-ui", "--model-id", str(tiny_blip2), "--set", f"model.adapter={tiny_adapter}"]
    )
    output = result.output.replace("\n", "")
    assert result.exit_code == 2 and "model.adapter" in output and "--adapter" in output


def test_flags_map_to_real_fields() -> None:
    params = set(inspect.signature(demo_ui_command).parameters) - {"config", "set_"}
    assert params == set(FLAG_FIELDS)
    assert set(FLAG_FIELDS.values()) <= set(field_paths(DemoUIConfig))


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_served_page_and_api(
    tiny_blip2: Path, tiny_adapter: Path, demo_models: DemoModels, photo: Image.Image, tmp_path: Path
) -> None:
    from gradio_client import Client, handle_file

    port = find_free_port()
    cfg = make_config(tiny_blip2, tiny_adapter, port=port)
    demo = launch_demo(build_demo(cfg, demo_models), cfg, block=False)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert httpx.get(url, timeout=10).status_code == 200
        config = httpx.get(url + "config", timeout=10).text
        assert "Read the base model caption aloud" in config and "machine generated" in config
        path = tmp_path / "photo.jpg"
        photo.save(path)
        client = Client(url, verbose=False)
        base, tuned, status = client.predict(handle_file(str(path)), api_name="/describe")
        assert (base, tuned, status) == describe_image(demo_models, str(path))
        notes = tmp_path / "notes.txt"
        notes.write_text("not a picture", encoding="utf-8")
        _, _, status = client.predict(handle_file(str(notes)), api_name="/describe")
        assert status.startswith("Error: 'notes.txt' is not an image")
    finally:
        demo.close()


CHROMIUM = Path("/usr/bin/chromium")
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# Records what the page asks the browser to say; headless Chromium has no voices to speak with.
RECORD_SPEECH_JS = "window.__spoken = []; window.speechSynthesis.speak = (u) => window.__spoken.push(u.text);"


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed: apt-get install -y chromium"
)
@pytest.mark.slow
def test_browser_upload_announce_read_aloud_and_axe(
    tiny_blip2: Path, tiny_adapter: Path, demo_models: DemoModels, photo: Image.Image, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    import axe_playwright_python

    port = find_free_port()
    cfg = make_config(tiny_blip2, tiny_adapter, port=port)
    demo = launch_demo(build_demo(cfg, demo_models), cfg, block=False)
    path = tmp_path / "photo.png"
    photo.save(path)
    base, tuned, status = describe_image(demo_models, str(path))
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.add_init_script(RECORD_SPEECH_JS)
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("input[type=file]").first.set_input_files(str(path))
            live = page.locator(f"#{LIVE_REGION_ID}")
            live.wait_for(state="attached", timeout=20_000)
            page.wait_for_function(f"document.getElementById('{LIVE_REGION_ID}').textContent.length > 0")
            assert live.text_content() == status
            for label, caption in (("Base model caption", base), ("Fine-tuned model caption", tuned)):
                box = page.get_by_label(label, exact=True)  # a real <label> association
                assert box.input_value() == caption and box.is_enabled()  # disabled boxes skip Tab
            page.get_by_role("button", name="Read the fine-tuned model caption aloud").click()
            page.wait_for_function("window.__spoken.length > 0", timeout=5_000)
            assert page.evaluate("window.__spoken") == [tuned]
            page.evaluate((Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text())
            result = page.evaluate(
                "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
            )
            assert len(result["passes"]) > 10, "axe ran no checks"
            assert [f"{v['id']}: {v['nodes'][0]['target']}" for v in result["violations"]] == []
            browser.close()
    finally:
        demo.close()


def test_taken_port_is_a_clear_error(tiny_blip2: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["demo-ui", "--model-id", str(tiny_blip2), "--device", "cpu", "--port", str(port)]
        result = CliRunner().invoke(app, args)
    output = result.output.replace("\n", "")
    assert result.exit_code == 2 and f"port={port}" in output and "pass another --port" in output
