"""`clientpulse screenshots`: pictures of the workbench of a running demo, for the README.

Signs in with the first RM of .demo/tokens.json through the sign-in page,
like a person, and saves the inbox and the first alert's page as PNGs. Drives
the distribution's Chromium (CLIENTPULSE_CHROMIUM, default /usr/bin/chromium)
through Playwright; no browser is ever downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

CHROMIUM = os.environ.get("CLIENTPULSE_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking"]


def run_screenshots(args: argparse.Namespace) -> int:
    from playwright.sync_api import sync_playwright

    people = json.loads(Path(args.tokens).read_text(encoding="utf-8"))
    person = next(p for p in people if p["role"] == args.role)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height}, locale="en-GB")
            page.goto(f"{args.url.rstrip('/')}/signin?lang={args.lang}")
            page.locator("input[type=password]").fill(person["token"])
            page.locator("button[type=submit]").click()
            page.wait_for_load_state()
            page.goto(f"{args.url.rstrip('/')}/inbox")
            page.screenshot(path=str(out / f"workbench-inbox{args.suffix}.png"), full_page=False)
            first = page.locator("#inbox-rows td.title a").first
            first.click()
            page.wait_for_url("**/alerts/**")
            page.screenshot(path=str(out / f"workbench-alert{args.suffix}.png"), full_page=True)
        finally:
            browser.close()
    print(f"saved {out / f'workbench-inbox{args.suffix}.png'} and {out / f'workbench-alert{args.suffix}.png'}")
    return 0
