"""Headless Chromium (Debian's): a keyboard-only participant session, screenshots, axe-core at WCAG 2.2 AA.

axe-core comes bundled in the `axe-playwright-python` wheel (axe.min.js, MPL-2.0); it is injected with
page.evaluate in a context that bypasses our CSP (the app itself ships no scripts).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from study_helpers import make_study

from benchmarks import study_load as bench

CHROMIUM = Path("/usr/bin/chromium")
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian chromium not installed: apt-get install -y chromium"
    ),
]


@pytest.fixture
def live(tmp_path: Path):
    """(study, base url) of a real uvicorn server on 127.0.0.1."""
    study = make_study(tmp_path / "study", n_participants=2)
    port = bench.find_free_port()
    server = bench.start_server(study.run_dir, port)
    yield study, f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def axe_violations(page) -> list[str]:
    """axe-core violations (id: first target) for the WCAG 2.x A/AA tags."""
    import axe_playwright_python

    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate((Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text())
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    assert len(result["passes"]) > 10, "axe ran no checks"
    return [f"{v['id']}: {v['nodes'][0]['target']}" for v in result["violations"]]


def assert_rendered(path: Path) -> None:
    """A real screenshot: non-trivial size and visibly more than a blank page."""
    image = Image.open(path).convert("L")
    assert path.stat().st_size > 5000 and image.width >= 320
    assert ImageStat.Stat(image).stddev[0] > 10, f"{path} looks blank"


def keyboard_fill_page(page, max_tabs: int = 80) -> None:
    """Answer the current page with Tab/Space/Enter/typing only, then submit with Enter."""
    answered: set[str] = set()
    for _ in range(max_tabs):
        page.keyboard.press("Tab")
        el = page.evaluate(
            "(() => { const e = document.activeElement; return {tag: e.tagName, "
            "type: e.type || '', name: e.name || '', id: e.id}; })()"
        )
        name = el["name"]
        if el["type"] == "radio" and name not in answered:
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("none", ""), f"{page.url}: focused radio {el['id']} has no visible outline"
            page.keyboard.press("Space")
            answered.add(name)
        elif el["type"] == "checkbox" and name == "agree":
            page.keyboard.press("Space")
        elif el["type"] == "text" and name == "answer_text":
            page.keyboard.type("2")
        elif el["tag"] == "TEXTAREA":
            page.keyboard.type("Clear <b>enough</b>")
        elif el["tag"] == "BUTTON" and el["type"] == "submit":
            with page.expect_navigation():
                page.keyboard.press("Enter")
            return
    raise AssertionError(f"no submit button reached on {page.url}")


def page_kind(page) -> str:
    title = page.title()
    for kind in ("Consent", "Instructions", "Practice", "Thank you"):
        if kind in title:
            return kind.lower()
    if page.locator("img").count():
        return "rating"
    if page.locator("#confidence").count():
        return "task"
    return "attention"


def test_keyboard_only_session_with_screenshots_and_axe(live, browser, tmp_path: Path) -> None:
    study, base_url = live
    context = browser.new_context(bypass_csp=True, viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(f"{base_url}/p/{study.tokens[0]}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    seen: dict[str, list[str]] = {}
    for step in range(20):
        kind = page_kind(page)
        shot = tmp_path / f"{step:02d}-{kind}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_rendered(shot)
        seen.setdefault(kind, axe_violations(page))
        if kind == "thank you":
            break
        keyboard_fill_page(page)
    assert set(seen) == {"consent", "instructions", "practice", "rating", "task", "attention", "thank you"}
    assert {k: v for k, v in seen.items() if v} == {}
    assert "DONE-42" in page.content()
    context.close()


def test_error_admin_and_narrow_pages_pass_axe_and_reflow(live, browser, tmp_path: Path) -> None:
    study, base_url = live
    found: dict[str, list[str]] = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(
            bypass_csp=True, color_scheme=scheme, viewport={"width": 320, "height": 700}
        )
        page = context.new_page()
        page.goto(f"{base_url}/p/not-a-real-token")
        found[f"error-{scheme}"] = axe_violations(page)
        page.goto(f"{base_url}/p/{study.tokens[1]}/consent")
        page.click("button[type=submit]")  # without ticking: the error summary page
        assert page.locator(".error-summary").count() == 1
        found[f"validation-{scheme}"] = axe_violations(page)
        page.goto(f"{base_url}/admin/login")
        found[f"admin-login-{scheme}"] = axe_violations(page)
        page.fill("#secret", study.admin_secret)
        page.click("button[type=submit]")
        assert "Participants" in page.title()
        found[f"admin-{scheme}"] = axe_violations(page)
        page.screenshot(path=str(tmp_path / f"admin-{scheme}.png"), full_page=True)
        assert_rendered(tmp_path / f"admin-{scheme}.png")
        for path in (f"/p/{study.tokens[1]}/consent", "/admin/participants"):
            page.goto(base_url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 320, f"{path}: horizontal scroll at 320 CSS px ({width}px)"
        context.close()
    assert {k: v for k, v in found.items() if v} == {}


def test_reflow_of_a_rating_trial_at_320_px(live, browser, tmp_path: Path) -> None:
    study, base_url = live
    context = browser.new_context(viewport={"width": 320, "height": 700}, reduced_motion="reduce")
    page = context.new_page()
    page.goto(f"{base_url}/p/{study.tokens[1]}")
    while not page.locator("img").count():
        keyboard_fill_page(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    font_px = float(re.sub("px", "", page.evaluate("getComputedStyle(document.body).fontSize")))
    assert font_px >= 18
    page.screenshot(path=str(tmp_path / "rating-320.png"), full_page=True)
    assert_rendered(tmp_path / "rating-320.png")
    context.close()


def test_verifier_keyboard_session_pages_pass_axe(live, browser, tmp_path: Path) -> None:
    from altcap.study.db import make_engine, make_session_factory
    from altcap.study.freeze import create_invitations

    study, base_url = live
    with make_session_factory(make_engine(study.db_url))() as db:
        token = create_invitations(db, 1, base_url, role="verifier")[0].token
    found: dict[str, list[str]] = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(
            bypass_csp=True, color_scheme=scheme, viewport={"width": 320, "height": 800}
        )
        page = context.new_page()
        page.goto(f"{base_url}/p/{token}")
        for step in range(3 if scheme == "light" else 1):  # consent, instructions, first check
            kind = "check" if page.locator("#correctness").count() else page.title().split(" ")[0].lower()
            found[f"{kind}-{scheme}"] = axe_violations(page)
            assert page.evaluate("document.documentElement.scrollWidth") <= 320, f"{kind}: scrolls"
            page.screenshot(path=str(tmp_path / f"verifier-{scheme}-{step}.png"), full_page=True)
            assert_rendered(tmp_path / f"verifier-{scheme}-{step}.png")
            if kind != "check":
                keyboard_fill_page(page)
        assert page.locator("img").count() == 1 and page.locator("p.caption").count() == 1
        assert page.evaluate("document.querySelector('img').naturalWidth") == 64  # the image really loads
        page.click("button[type=submit]")  # nothing chosen: error summary tied to the fieldsets
        assert page.locator(".error-summary a[href='#hallucination-1']").count() == 1
        found[f"check-errors-{scheme}"] = axe_violations(page)
        keyboard_fill_page(page)
        assert "Answer saved" in page.locator("[role=status]").inner_text()
        found[f"check-saved-{scheme}"] = axe_violations(page)
        context.close()
    assert {"consent-light", "instructions-light", "check-light", "check-dark"} <= set(found)
    assert {k: v for k, v in found.items() if v} == {}
