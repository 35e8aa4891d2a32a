"""Screenshot of the web chat page answering questions about the sample knowledge base.

    python scripts/web_chat_screenshot.py [--kb DIR] [--out docs/img/web_chat.png]

Serves the knowledge base (ingesting examples/sample_kb first when DIR is empty) on 127.0.0.1, asks
two questions in headless chromium (Playwright; Debian: apt-get install -y chromium), opens the first
answer's source and saves the page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["What are the opening hours of the IT Service Desk?", "Who won the 1998 World Cup?"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kb", type=Path, default=ROOT / "benchmarks" / ".cache" / "server_load_kb")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "web_chat.png")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from playwright.sync_api import expect, sync_playwright

    from kb_assistant import KnowledgeBase
    from kb_assistant.server import create_app, running_server

    kb = KnowledgeBase(args.kb)
    if not kb.documents():
        kb.ingest([ROOT / "examples" / "sample_kb"], show_progress=False)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found (Debian: apt-get install -y chromium)")
    with running_server(create_app(kb)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        import httpx  # warm-up outside the picture: the models load on first use

        httpx.post(url + "/v1/ask", json={"question": "What is the payload of the NW-200 Picker?",
                                          "answer_mode": "generate"}, timeout=300)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.goto(url + "/")
        expect(page.locator("#health-text")).to_contain_text("ready")
        for i, question in enumerate(QUESTIONS):
            page.fill("#question", question)
            page.press("#question", "Enter")
            expect(page.locator(".msg.assistant").nth(i)).to_have_attribute("data-state", "done",
                                                                             timeout=300_000)
        answered = page.locator('.msg.assistant[data-unknown="false"]')
        heads = answered.first.locator(".sources:not(.nearest) .source-head")
        if heads.count():
            heads.first.click()
        page.evaluate("health()")
        expect(page.locator("#health-text")).to_contain_text("ready")
        page.locator("#messages").evaluate("el => el.scrollTop = 0")
        page.mouse.move(0, 0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    kb.close()
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
