"""Headless Chromium (Debian's): a keyboard-only participant session, screenshots, axe-core at WCAG 2.2 AA.

axe-core comes bundled in the `axe-playwright-python` wheel (axe.min.js, MPL-2.0); it is injected with
page.evaluate in a context that bypasses our CSP (the app itself ships no scripts).
"""

from __future__ import annotations

import itertools
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
    # img0 and img1 carry a context, so axe also checks the "Where this image appears" region.
    contexts = {"images/img0.png": "news article about a flood", "images/img1.png": "shopping listing"}
    study = make_study(tmp_path / "study", n_participants=2, contexts=contexts)
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
        if "Where this image appears" in page.content():
            seen.setdefault(f"{kind} with context", axe_violations(page))
        if kind == "thank you":
            break
        keyboard_fill_page(page)
    kinds = {"consent", "instructions", "practice", "rating", "task", "attention", "thank you"}
    assert set(seen) == kinds | {"rating with context", "task with context"}
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


# ---- issue #28: screen-reader ties, error focus, 400 % zoom, forced colours -----------------------


@pytest.fixture(scope="module")
def live_study(tmp_path_factory: pytest.TempPathFactory):
    """(study, base url, verifier token) of one server shared by the issue #28 tests."""
    from altcap.study.db import make_engine, make_session_factory
    from altcap.study.freeze import create_invitations

    study = make_study(tmp_path_factory.mktemp("a11y") / "study", n_participants=6)
    with make_session_factory(make_engine(study.db_url))() as db:
        verifier = create_invitations(db, 1, "http://x", role="verifier")[0].token
    port = bench.find_free_port()
    server = bench.start_server(study.run_dir, port)
    yield study, f"http://127.0.0.1:{port}", verifier
    server.terminate()
    server.wait(timeout=10)


def ax_groups(page) -> dict[str, str]:
    """Chromium's own accessibility tree: name -> description of every group (fieldset) node."""
    cdp = page.context.new_cdp_session(page)
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    cdp.detach()
    groups = {}
    for node in nodes:
        if node.get("role", {}).get("value") in ("group", "radiogroup") and not node.get("ignored"):
            groups[node.get("name", {}).get("value", "")] = node.get("description", {}).get("value", "")
    return groups


def walk_to(page, predicate, max_pages: int = 12) -> None:
    """Answer pages by keyboard until `predicate(page)` holds."""
    for _ in range(max_pages):
        if predicate(page):
            return
        keyboard_fill_page(page)
    raise AssertionError(f"page not reached; at {page.url}")


@pytest.mark.slow
def test_describedby_ties_each_caption_to_its_rating_controls(live_study, browser) -> None:
    from playwright.sync_api import expect

    study, base_url, verifier = live_study
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base_url}/p/{study.tokens[0]}")
    walk_to(page, lambda p: p.locator("#confidence").count() > 0)  # the first task trial
    caption = page.locator("p.caption").inner_text()
    assert ax_groups(page)["How many dogs are there?"].startswith(caption[:20])
    walk_to(page, lambda p: p.locator("img").count() > 0 and "Practice" not in p.title())
    groups = ax_groups(page)
    for position in (1, 2):
        text = page.locator(f"#description-{position}-text").inner_text()
        for question in ("How useful is this description?", "How detailed is it?"):
            name = f"Description {position}: {question}"
            assert groups[name] == text, (name, groups.get(name))
            expect(page.get_by_role("group", name=name)).to_have_accessible_description(text)
    page.goto(f"{base_url}/p/{verifier}")
    walk_to(page, lambda p: p.locator("#correctness").count() > 0)
    caption = page.locator("p.caption").inner_text()
    groups = ax_groups(page)
    assert groups["Is this description factually correct?"] == caption
    assert groups["Does it mention anything that is not in the image?"] == caption
    context.close()


def headings(page) -> list[tuple[int, str]]:
    return page.evaluate(
        "[...document.querySelectorAll('h1,h2,h3,h4')].map(h => [Number(h.tagName[1]), h.textContent])"
    )


@pytest.mark.slow
def test_focus_error_summary_after_a_validation_error(live_study, browser) -> None:
    study, base_url, _ = live_study
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(f"{base_url}/p/{study.tokens[1]}")
    found = {}
    for kind in ("consent", "practice", "task"):
        page.click("button[type=submit]")  # nothing answered
        # autofocus runs at a rendering opportunity after load: wait for it (fails if it never comes)
        page.wait_for_function("document.activeElement.classList.contains('error-summary')", timeout=5000)
        levels = [level for level, _ in headings(page)]
        assert levels[0] == 1 and levels.count(1) == 1, (kind, levels)  # the h1 comes first
        assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), (kind, levels)
        links = page.locator(".error-summary a")
        assert links.count() >= 1
        for i in range(links.count()):
            text, target = links.nth(i).inner_text(), links.nth(i).get_attribute("href")
            assert len(text) <= 110 and page.locator(target).count() == 1, (kind, text, target)
        found[kind] = axe_violations(page)
        first_target = links.nth(0).get_attribute("href")
        page.keyboard.press("Tab")  # from the summary, Tab reaches its first link
        assert page.evaluate("document.activeElement.getAttribute('href')") == first_target
        page.keyboard.press("Enter")
        assert page.evaluate("'#' + document.activeElement.id") == first_target, kind
        if kind == "consent":
            walk_to(page, lambda p: "Practice" in p.title(), max_pages=4)
        elif kind == "practice":
            walk_to(page, lambda p: p.locator("#confidence").count() > 0, max_pages=4)
    assert {k: v for k, v in found.items() if v} == {}
    context.close()


def page_checks(page) -> tuple[int, list[str]]:
    """(scroll width, Tab stops without a visible focus outline), tabbing through the whole page."""
    unseen: list[str] = []
    stops: set[str] = set()
    for _ in range(80):
        page.keyboard.press("Tab")
        stop = page.evaluate(
            "(() => { const e = document.activeElement; if (e === document.body) return null; "
            "const s = getComputedStyle(e); return [e.tagName + '#' + e.id + ':' + (e.name || "
            "e.getAttribute('href') || '') + ':' + (e.value || ''), s.outlineStyle, s.outlineWidth]; })()"
        )
        if stop is None or stop[0] in stops:
            break
        stops.add(stop[0])
        if stop[1] == "none" or float(stop[2].removesuffix("px")) < 2:
            unseen.append(f"{stop[0]} ({stop[1]} {stop[2]})")
    assert stops, "no Tab stop on the page"
    return page.evaluate("document.documentElement.scrollWidth"), unseen


def summary_focus_problem(page) -> list[str]:
    """[] if a validation error page put a visibly outlined focus on its error summary."""
    try:
        page.wait_for_function("document.activeElement.classList.contains('error-summary')", timeout=3000)
    except Exception:  # playwright's TimeoutError: focus never reached the summary
        return ["error summary not focused"]
    style = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); "
                          "return [s.outlineStyle, s.outlineWidth]; })()")
    return [] if style[0] != "none" and float(style[1].removesuffix("px")) >= 2 else [f"summary {style}"]


def visit_every_participant_page(page, base_url: str, token: str, verifier: str) -> dict[str, tuple]:
    """Every kind of participant page (errors, stale form and pause included): page kind -> checks."""
    seen: dict[str, tuple] = {}

    def check(kind: str, on=page) -> None:
        summary = summary_focus_problem(on) if kind.endswith("-error") else []
        on.evaluate("window.scrollTo(0, 0)")
        width, unseen = page_checks(on)
        seen.setdefault(kind, (width, summary + unseen, axe_violations(on)))
        on.focus("main")  # Tab starts from the top of the content again for the answering that follows

    page.goto(f"{base_url}/p/{token}")
    stale = None
    for _ in range(20):
        kind = page_kind(page)
        check(kind)
        if kind == "thank you":
            break
        if kind in ("rating", "task") and f"{kind}-error" not in seen:
            page.click("button[type=submit]")
            check(f"{kind}-error")
        if kind == "rating" and stale is None:
            stale = page.context.new_page()  # the same trial open in a second tab
            stale.goto(page.url)
        keyboard_fill_page(page)
    # The second tab's out-of-date form, answered differently: the recorded answer is shown instead.
    stale.evaluate(
        "document.querySelectorAll('fieldset').forEach(f => { const r = "
        "f.querySelectorAll('input[type=radio]'); if (r.length) r[r.length - 1].checked = true; })"
    )
    stale.click("button[type=submit]")
    assert "already saved" in stale.title()
    check("recorded", stale)
    for path, kind in ((f"/p/{token}/pause", "pause"), ("/p/no-such-link", "error")):
        page.goto(base_url + path)
        check(kind)
    page.goto(f"{base_url}/p/{verifier}")
    for _ in range(3):
        if page.locator("#correctness").count():
            break
        keyboard_fill_page(page)
    check("verify")
    return seen


@pytest.mark.slow
def test_zoom_320_every_participant_page_reflows_without_horizontal_scroll(live_study, browser) -> None:
    study, base_url, verifier = live_study
    context = browser.new_context(bypass_csp=True, viewport={"width": 320, "height": 640})
    seen = visit_every_participant_page(context.new_page(), base_url, study.tokens[2], verifier)
    expected = {"consent", "instructions", "practice", "task", "task-error", "rating", "rating-error"}
    assert expected | {"attention", "thank you", "recorded", "pause", "error", "verify"} == set(seen)
    assert {kind: v[0] for kind, v in seen.items() if v[0] > 320} == {}
    assert {kind: v[1] for kind, v in seen.items() if v[1]} == {}  # focus visible at every Tab stop
    assert {kind: v[2] for kind, v in seen.items() if v[2]} == {}
    context.close()


@pytest.mark.slow
def test_forced_colors_every_participant_page_keeps_visible_focus(live_study, browser) -> None:
    study, base_url, verifier = live_study
    context = browser.new_context(
        bypass_csp=True, forced_colors="active", viewport={"width": 320, "height": 640}
    )
    page = context.new_page()
    page.goto(base_url)
    assert page.evaluate("matchMedia('(forced-colors: active)').matches")
    seen = visit_every_participant_page(page, base_url, study.tokens[3], verifier)
    assert {kind: v[1] for kind, v in seen.items() if v[1]} == {}  # focus visible at every Tab stop
    assert {kind: v[0] for kind, v in seen.items() if v[0] > 320} == {}
    assert {kind: v[2] for kind, v in seen.items() if v[2]} == {}
    context.close()
