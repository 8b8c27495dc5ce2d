"""compare's text and HTML reports (streams/tools/compare.py): what they say, escaped, one file fetching nothing."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest

from handlers.ruleset import Ruleset
from handlers.whatif import Comparison, Label, compare, side
from streams.api.charts import difference_chart, line_chart, paired_bar_chart
from streams.tools.compare import About, render_html, render_text
from tests.unit.test_whatif import alert, local, variant


class Tags(HTMLParser):
    """Every element and attribute name of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attributes.update(name for name, _ in attrs)


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture
def comparison(rules: Ruleset) -> Comparison:
    kept = alert(local(2, 10), alert_id="kept", severity="critical")
    gone = alert(local(2, 11), alert_id="gone", client=HOSTILE[:60], facts={"note": HOSTILE + "\x1b[2J"})
    new = alert(local(3, 9), alert_id="new", type_="complaint", rm=HOSTILE[:40])
    a = side([kept, gone], rules)
    b = side([variant(kept, severity="warning"), new], rules, rule_version="B-doubled")
    labels = [Label("gone", "large_outflow", "resolved", "retained")]
    c = compare(a, b, timezone=rules.timezone, labels=labels)
    c.extra["examples_per_type"] = 5
    return c


ABOUT = About("rules/a.yaml", "rules/b.yaml", "events.jsonl, 3 records", "labels.jsonl")


def test_the_text_report_has_every_table_and_never_sends_control_characters(comparison: Comparison) -> None:
    text = render_text(comparison, ABOUT)
    assert "A: rules/a.yaml" in text and "B: rules/b.yaml (rule_version B-doubled)" in text
    total = next(line for line in text.splitlines() if line.strip().startswith("total"))
    assert total.split() == ["total", "2", "2", "1", "1", "1", "+0.0%"]
    outflow = next(line for line in text.splitlines() if line.strip().startswith("Large outflow"))
    assert outflow.split()[2:] == ["2", "1", "1", "1", "0", "-50.0%"]
    complaint = next(line for line in text.splitlines() if line.strip().startswith("Complaint"))
    assert complaint.split()[-1] == "new"
    for heading in ("By severity", "By tier", "Load per RM and day", "Notifications", "Known outcomes"):
        assert heading in text
    assert "critical  warning  1" in re.sub(" +", "  ", text)
    assert "[retained]" in text, "an example only in A shows its stored outcome"
    assert "\x1b" not in text and "\ufffd[2J" in text


def test_the_text_report_aligns_chinese_columns(comparison: Comparison) -> None:
    text = render_text(comparison, ABOUT, "zh")
    assert "规则模拟" in text and "大额转出" in text
    section = text.split("按类型\n", 1)[1].split("\n\n", 1)[0].splitlines()
    lines = [line for line in section if line.startswith(("  大额转出", "  客户投诉"))]
    # Wide characters take two columns: the numbers of both rows end in the same column.
    ends = {sum(2 if ord(ch) > 0x2E80 else 1 for ch in line) for line in lines}
    assert len(lines) == 2 and len(ends) == 1


def test_the_html_report_is_one_escaped_file_that_can_fetch_and_run_nothing(comparison: Comparison) -> None:
    page = render_html(comparison, ABOUT)
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;img src=x" in page and "&lt;script&gt;" in page
    assert "\x1b" not in page, "control characters from events are shown as U+FFFD"
    # Nothing outside the file: no URL anywhere, no element or attribute that loads or runs something.
    assert not re.search(r"https?://", page)
    tags = Tags()
    tags.feed(page)
    assert {"html", "style", "svg", "polyline", "table"} <= tags.names
    assert not tags.names & {"script", "img", "link", "iframe", "object", "embed", "image", "use", "foreignobject"}
    assert not {a for a in tags.attributes if a in {"src", "href", "xlink:href", "style"} or a.startswith("on")}
    # The style block is allowed by its hash alone (a page that breaks out of its markup has no inline style).
    css = re.search(r"<style>(.*?)</style>", page, re.S)
    assert css is not None
    digest = base64.b64encode(hashlib.sha256(css.group(1).encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None and "default-src 'none'" in policy.group(1)
    assert f"style-src 'sha256-{digest}'" in policy.group(1)
    assert " style=" not in page
    # The charts: alerts per day A against B, the difference, small multiples per type, load, notifications.
    for chart in ("chart-total", "chart-difference", "chart-load", "chart-spread", "chart-notify", "chart-pushes"):
        assert f'id="{chart}"' in page, chart
    assert page.count('class="multiple"') == 2
    assert 'data-series="A"' in page and 'data-series="B"' in page
    assert 'data-alert-id="gone"' in page and 'data-alert-id="new"' in page


def test_the_html_report_speaks_chinese(comparison: Comparison) -> None:
    page = render_html(comparison, ABOUT, "zh")
    assert '<html lang="zh-CN">' in page and "规则模拟" in page and "每日提醒数：A 对比 B" in page
    assert "大额转出" in page and "已挽留" in page


def test_new_charts_escape_every_text_and_need_no_style_attribute() -> None:
    days = ["2026-03-01", "2026-03-02"]
    lines = line_chart(days, [("<A>", [1, 2]), ("B", [0, 3])], 'a "title"')
    assert "&lt;A&gt;" in lines and "&quot;title&quot;" in lines and "style=" not in lines
    assert lines.count("<polyline") == 2 and lines.count("<circle") == 4
    assert 'data-series="&lt;A&gt;"' in lines
    bars = paired_bar_chart([("<b>", [1.5, None])], ["A", "B"], "t")
    assert "&lt;b&gt;" in bars and "1.5" in bars and "\u2013" in bars and "style=" not in bars
    diff = difference_chart(days, [2, -1], "<t>")
    assert 'class="c1"' in diff and 'class="c0"' in diff and "&lt;t&gt;" in diff
    assert difference_chart(days, [0, 0], "t") == "" and line_chart([], [], "t") == ""
    assert paired_bar_chart([], ["A"], "t") == ""


def test_a_comparison_of_nothing_still_reports(rules: Ruleset) -> None:
    empty = compare(side([], rules), side([], rules), timezone=rules.timezone)
    assert "No alerts under either rules file." in render_text(empty, ABOUT)
    page = render_html(empty, ABOUT)
    assert "No alerts under either rules file." in page
    assert empty.as_json()["per_rm_day"]["a"]["max"] == 0
    assert empty.days == [] and empty.a.load.mean == 0.0
