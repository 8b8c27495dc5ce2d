"""`clientpulse compare --html` in a real browser: opened from a file:// URL with every request recorded and any
to the network refused, the report makes none, renders its charts (A against B), shows hostile event text as text,
and is photographed for docs/whatif.md."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli import main
from streams.settings import DEFAULT_RULES
from streams.tools.synthetic import history
from tests.integration.test_compare_cli import doubled_limits
from tests.unit.builders import client_event, deposit, topic_of, tx
from tests.unit.test_replay import dump

HOSTILE_CLIENT = '<img src=x onerror="window.__pwned=1">'
HOSTILE_RM = "<script>window.__pwned=2</script>"
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "compare-report.png"
SAVE_DOCS_IMAGE = "CLIENTPULSE_DOCS_IMAGES"
"""Set (to anything) to also save the screenshot as docs/images/compare-report.png."""


@dataclass
class Report:
    en: Path
    zh: Path
    data: dict[str, Any]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Ninety days of a synthetic bank, and one client whose id and RM are markup, replayed under the shipped
    rules (A) and under doubled single limits (B): the hostile client's outflow is a large outflow only under A."""
    tmp = tmp_path_factory.mktemp("compare-html")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = list(history(8000, 300, seed=31, span_days=90, run_id="html"))
    later = start + timedelta(days=91)
    hostile = [
        client_event(later, "onboarded", client=HOSTILE_CLIENT, rm_id=HOSTILE_RM, segment="retail"),
        deposit(later + timedelta(hours=1), "300000", client=HOSTILE_CLIENT),
        tx(later + timedelta(hours=2), "150000", client=HOSTILE_CLIENT, bank="external"),
    ]
    records += [(topic_of(value), HOSTILE_CLIENT, value) for value in hostile]
    (tmp / "history.jsonl").write_bytes(b"\n".join(dump(records)) + b"\n")
    (tmp / "rules").mkdir()
    shutil.copyfile(DEFAULT_RULES, tmp / "rules" / "default.yaml")
    doubled_limits(tmp / "rules" / "doubled-limits.yaml")
    here = Path.cwd()
    os.chdir(tmp)  # the report names the files as given: relative, as a person types them
    try:
        for lang in ("en", "zh"):
            assert main(["compare", "history.jsonl", "--rules", "rules/default.yaml", "--rules",
                         "rules/doubled-limits.yaml", "--html", f"report-{lang}.html", "--json", "report.json",
                         "--lang", lang, "--examples", "40"]) == 0  # fmt: skip
    finally:
        os.chdir(here)
    return Report(tmp / "report-en.html", tmp / "report-zh.html", orjson.loads((tmp / "report.json").read_bytes()))


@dataclass
class Opened:
    page: Any
    requests: list[str]
    refused: list[str]
    console: list[str]


@pytest.fixture
def opened(browser: Any) -> Iterator[Any]:
    """A page whose every request is recorded, and refused unless it reads a local file."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    requests: list[str] = []
    refused: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        requests.append(url)
        if url.startswith("file://"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", handle)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        yield Opened(page, requests, refused, console)
    finally:
        context.close()


def _box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    return box


def test_the_recorder_sees_a_page_that_does_reach_out(opened: Opened, tmp_path: Path) -> None:
    """The check below can fail: a page with a remote image is caught by the same recorder."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/pixel.png">', encoding="utf-8")
    opened.page.goto(leaky.as_uri())
    opened.page.wait_for_load_state("load")
    assert opened.refused == ["http://127.0.0.1:9/pixel.png"]


def test_the_report_makes_no_request_renders_its_charts_and_shows_event_text_as_text(
    opened: Opened, report: Report, tmp_path: Path
) -> None:
    page = opened.page
    page.goto(report.en.as_uri())
    page.wait_for_load_state("load")
    assert opened.requests == [report.en.as_uri()], "the file itself, nothing else"
    assert opened.refused == []
    assert opened.console == [], "no script error, no Content-Security-Policy violation (the styles' hash holds)"
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("script").count() == 0 and page.locator("img").count() == 0
    # The styles applied: a chart line has no fill (an unstyled polyline is filled black).
    assert page.evaluate("getComputedStyle(document.querySelector('#chart-total polyline')).fill") == "none"

    data = report.data
    a, b = data["a"], data["b"]
    assert page.locator("#total-a").inner_text() == f"{a['alerts']:,}"
    assert page.locator("#total-b").inner_text() == f"{b['alerts']:,}"
    assert page.locator("#total-only-a").inner_text() == f"{data['only_in_a']:,}"
    # Alerts per day, A against B: one visible line per side, named by its rule_version, over every day.
    for name in (f"A {a['rule_version']}", f"B {b['rule_version']}"):
        line = page.locator(f'#chart-total polyline[data-series="{name}"]')
        assert line.count() == 1
        box = _box(line)
        assert box["width"] > 600 and box["height"] > 20
        assert len(line.get_attribute("points").split()) == len(data["days"])
    assert _box(page.locator("#chart-difference svg"))["height"] > 50
    # Small multiples: one chart per type either side raised, each with both lines.
    types = {r["key"] for r in data["by_type"]}
    multiples = page.locator("figure.multiple")
    assert multiples.count() == len(types)
    assert {multiples.nth(i).get_attribute("data-type") for i in range(multiples.count())} == types
    outflow = page.locator('figure.multiple[data-type="large_outflow"]')
    assert outflow.locator("polyline").count() == 2 and _box(outflow.locator("svg"))["width"] > 200
    # The RM-day load, the notifications and the digests, A against B.
    for chart in ("#chart-load", "#chart-spread", "#chart-notify", "#chart-rms"):
        bars = page.locator(f"{chart} rect[data-series]")
        assert {bars.nth(i).get_attribute("data-series") for i in range(bars.count())} == {"A", "B"}, chart
        assert _box(page.locator(f"{chart} svg"))["height"] > 40, chart
    notify_bars = page.locator("#chart-notify rect[data-series]")
    assert notify_bars.count() == 8, "pushed, held, digests and digested alerts, for A and for B"
    for chart in ("#chart-pushes", "#chart-digests"):
        assert page.locator(f"{chart} polyline").count() == 2
        assert _box(page.locator(f"{chart} svg"))["width"] > 300
    assert page.locator("#notify-table tr").count() > 10

    # The hostile client's outflow is only in A: its id and RM are shown as the text they are.
    row = page.locator("#only-in-a tr", has_text=HOSTILE_CLIENT)
    assert row.count() == 1
    assert HOSTILE_RM in row.inner_text() and "Large outflow" in row.inner_text()
    assert page.locator("#per-type", has_text="Large outflow").count() == 1
    assert page.locator("#load tr", has_text=HOSTILE_RM).count() == 1, "the RM table names the hostile RM as text"

    shot = tmp_path / "compare-report.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get(SAVE_DOCS_IMAGE):
        shutil.copyfile(shot, DOCS_IMAGE)


def test_the_chinese_report_renders_the_same_charts(opened: Opened, report: Report) -> None:
    page = opened.page
    page.goto(report.zh.as_uri())
    page.wait_for_load_state("load")
    assert opened.requests == [report.zh.as_uri()] and opened.console == []
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert "规则模拟" in page.locator("h1").inner_text()
    assert page.locator("#chart-total figcaption").inner_text() == "每日提醒数：A 对比 B"
    assert page.locator("#chart-total polyline").count() == 2
    assert _box(page.locator("#chart-total svg"))["width"] > 600
    assert page.locator('figure.multiple[data-type="large_outflow"] figcaption').inner_text() == "大额转出"
