"""The web chat page in a real browser: Debian's chromium, headless, driven by Playwright.

Skipped (with the reason) only where chromium or the playwright package is missing; CI installs both
(``apt-get install -y chromium``; ``pip install playwright`` -- never ``playwright install``).
"""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install playwright)")

from server_helpers import UNKNOWN_QUESTION, build_tiny_kb  # noqa: E402

from kb_assistant.server import create_app, running_server  # noqa: E402

CHROMIUM = os.environ.get("KB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium not found (Debian: apt-get install -y chromium)")

LEAVE_DOC = "全职员工每年享有15个工作日的年假。兼职员工按比例享有年假。年假须提前两周通过人事系统申请。\n"
LEAVE_QUESTION = "全职员工每年有多少天年假？"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    kb = build_tiny_kb(tmp_path_factory.mktemp("web"))
    with running_server(create_app(kb)) as url:
        yield url
    kb.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def ask(page, question: str, timeout_ms: int = 120_000):
    """Type a question, send it, wait for the streamed answer to finish; returns the answer row."""
    before = page.locator(".msg.assistant").count()
    page.fill("#question", question)
    page.press("#question", "Enter")
    row = page.locator(".msg.assistant").nth(before)
    sync_api.expect(row).to_have_attribute("data-state", "done", timeout=timeout_ms)
    return row


def test_page_loads_with_documents_and_health(page):
    sync_api.expect(page.locator("#doc-count")).to_have_text("3")
    sync_api.expect(page.locator("#doc-list li")).to_have_count(3)
    sync_api.expect(page.locator("#health-text")).to_contain_text("ready")


def test_unknown_answer_is_marked(page):
    row = ask(page, UNKNOWN_QUESTION)
    assert row.get_attribute("data-unknown") == "true"
    sync_api.expect(row.locator(".badge-unknown")).to_be_visible()
    assert "unknown" in (row.get_attribute("class") or "")
    assert page.locator(".msg.user .bubble").last.inner_text() == UNKNOWN_QUESTION


def test_upload_then_answer_with_clickable_sources(page, tmp_path):
    doc = tmp_path / "年假制度.txt"
    doc.write_text(LEAVE_DOC, encoding="utf-8")
    page.set_input_files("#file-input", str(doc))
    sync_api.expect(page.locator("#upload-status")).to_contain_text("1 added", timeout=120_000)
    sync_api.expect(page.locator("#doc-list")).to_contain_text("年假制度.txt")
    # Chinese questions are answered extractively by default (no generator): fast and deterministic
    row = ask(page, LEAVE_QUESTION)
    assert row.get_attribute("data-unknown") == "false"
    sync_api.expect(row.locator(".answer-text")).to_contain_text("15")
    source = row.locator(".source").first
    sync_api.expect(source.locator(".source-file")).to_have_text("年假制度.txt")
    passage = source.locator(".source-text")
    sync_api.expect(passage).to_be_hidden()
    source.locator(".source-head").click()
    sync_api.expect(passage).to_be_visible()
    sync_api.expect(passage).to_contain_text("15个工作日")
    # the [n] citation marker in the answer opens its source too
    source.locator(".source-head").click()
    sync_api.expect(passage).to_be_hidden()
    row.locator(".answer-text .cite").first.click()
    sync_api.expect(passage).to_be_visible()


@pytest.mark.slow
def test_streamed_generated_answer(page):
    row = ask(page, "What is the address and port of the company VPN server?", timeout_ms=300_000)
    text = row.locator(".answer-text").inner_text()
    assert "1194" in text or "vpn.acme.example" in text
    sync_api.expect(row.locator(".source-file").first).to_have_text("vpn.md")
    sync_api.expect(row.locator(".badge-unknown")).to_have_count(0)
