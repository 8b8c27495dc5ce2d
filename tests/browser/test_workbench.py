"""The workbench in a real browser: sign in, the RM's own inbox, acting on an alert (checked through the API
and the audit trail), the manager's views and assignment, live updates, sign-out, CSRF, and hostile text."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.request import Request, urlopen
from zoneinfo import ZoneInfo

import pytest

from handlers.ruleset import load_rules
from schemas.alerts import Alert
from streams.settings import DEFAULT_RULES
from tests.browser.conftest import Bench
from tests.integration.test_store import make_alert

pytestmark = pytest.mark.db

SHIPPED = load_rules(DEFAULT_RULES)
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>&amp;"\''


def _alert(rm_id: str | None, **overrides: Any) -> Alert:
    """An alert like the worker's: its priority from the shipped points, its titles only when given."""
    base = make_alert(rm_id=rm_id, client_id=overrides.pop("client_id", f"c-{uuid.uuid4().hex[:8]}"))
    data = base.model_dump(mode="json")
    data.update(overrides)
    if "titles" not in overrides:
        data["titles"] = None
    data["priority"] = SHIPPED.priorities[(data["type"], data["severity"], data["tier"])]
    return Alert.model_validate(data)


def _api(bench: Bench, who: str, path: str) -> Any:
    request = Request(f"{bench.url}{path}", headers={"Authorization": f"Bearer {bench.tokens[who]}"})
    with urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-GB")
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    opened.errors = errors
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Any, bench: Bench, who: str, lang: str = "en") -> None:
    page.goto(f"{bench.url}/signin?lang={lang}")
    # The sign-in page has one token field and one submit button.
    assert page.locator("input[type=password]").count() == 1
    assert page.locator("button[type=submit]").count() == 1
    page.locator("input[type=password]").fill(bench.tokens[who])
    page.locator("button[type=submit]").click()
    page.wait_for_load_state()


def test_an_rm_signs_in_sees_only_its_alerts_acts_on_one_and_signs_out(bench: Bench, page: Any) -> None:
    mine = _alert(bench.rms["alice"], severity="warning", title="Outflow of 80,000.00 CNY", tier="gold")
    urgent = _alert(
        bench.rms["alice"],
        severity="critical",
        title="Complaint (high severity) via branch",
        type="complaint",
        facts={"severity": "high", "channel": "branch", "tier": "gold"},
    )
    theirs = _alert(bench.rms["bob"], title="Bob's client left")
    orphan = _alert(None, title="Nobody's client")
    bench.insert(mine, urgent, theirs, orphan)
    bench.snapshot(
        client_id=mine.client_id,
        aum="1234567.80",
        rm_id=bench.rms["alice"],
        tier="platinum",
        last_activity="2026-02-28T09:00:00+00:00",
    )
    bench.snapshot(client_id=urgent.client_id, aum="800000.00", rm_id=bench.rms["alice"], tier="gold")

    sign_in(page, bench, "alice")
    assert page.url.endswith("/inbox")
    rows = page.locator("#inbox-rows tr")
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.alertId)")
    assert mine.alert_id in ids and urgent.alert_id in ids
    assert theirs.alert_id not in ids and orphan.alert_id not in ids
    # Priority first: the critical complaint before the warning.
    assert ids.index(urgent.alert_id) < ids.index(mine.alert_id)
    assert page.get_by_text("Signed in as alice (rm)").is_visible()
    # Filters: only complaints.
    page.get_by_label("Type").select_option("complaint")
    page.get_by_role("button", name="Apply").click()
    filtered = page.locator("#inbox-rows tr").evaluate_all("rows => rows.map(r => r.dataset.alertId)")
    assert urgent.alert_id in filtered and mine.alert_id not in filtered
    page.goto(f"{bench.url}/inbox")
    # Alerts of T0 are long overdue: the badge says so.
    assert page.locator(f'tr[data-alert-id="{mine.alert_id}"] .sla-overdue').inner_text() == "overdue"

    page.locator(f'tr[data-alert-id="{mine.alert_id}"] td.title a').click()
    page.wait_for_url(f"**/alerts/{mine.alert_id}")
    assert page.locator("h1").inner_text() == "Outflow of 80,000.00 CNY"
    assert "Outflow 1,200,000.00 CNY ≥ limit 500,000.00 CNY for gold; to another bank." in page.inner_text(".sentence")
    card = page.inner_text("dl.cardlist")
    assert "1,234,567.80 CNY" in card and "platinum" in card and "2026-02-28 17:00 UTC+08:00" in card
    client_link = page.get_by_role("link", name="Client page")
    assert mine.client_id in (client_link.get_attribute("href") or "")

    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url("**done=ack")
    assert page.get_by_role("status").inner_text() == "Acknowledged."
    page.get_by_label("Outcome").select_option(label="contacted")
    page.locator("#resolve-note").fill("called, client is fine")
    page.get_by_role("button", name="Resolve").click()
    page.wait_for_url("**done=resolve")

    stored = _api(bench, "alice", f"/api/alerts/{mine.alert_id}")
    assert stored["status"] == "resolved" and stored["outcome"] == "contacted"
    assert [(e["action"], e["actor"], e["outcome"], e["note"]) for e in stored["events"]] == [
        ("created", "clientpulse", None, None),
        ("ack", "alice", None, None),
        ("resolve", "alice", "contacted", "called, client is fine"),
    ]
    history = page.inner_text("ol.history")
    assert "resolved: contacted" in history and "called, client is fine" in history

    # Dismissing as a false positive without a note is refused, with the reason shown.
    page.goto(f"{bench.url}/alerts/{urgent.alert_id}")
    page.get_by_label("Reason", exact=True).select_option("false_positive")
    page.get_by_role("button", name="Dismiss").click()
    assert "note: required when dismissing as false_positive" in page.get_by_role("alert").inner_text()
    assert _api(bench, "alice", f"/api/alerts/{urgent.alert_id}")["status"] == "open"
    # A complaint is never snoozed: its page says so instead of offering the form.
    assert page.locator(".never-snoozed").is_visible()
    assert page.get_by_role("button", name="Snooze").count() == 0

    # The client page: the card and the timeline, newest first, with the status changes.
    page.goto(f"{bench.url}/clients/{mine.client_id}")
    timeline = page.locator("ol.timeline li").all_inner_texts()
    assert "resolved: contacted" in timeline[0] and "acknowledged" in timeline[1] and "raised" not in timeline[0]
    assert "Outflow of 80,000.00 CNY" in timeline[-1]

    # Another RM's alert or client is not found.
    assert page.goto(f"{bench.url}/alerts/{theirs.alert_id}").status == 404
    assert page.goto(f"{bench.url}/clients/{theirs.client_id}").status == 404

    page.goto(f"{bench.url}/inbox")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    assert page.goto(f"{bench.url}/inbox").url.endswith("/signin")
    assert page.errors == []


def test_the_manager_sees_the_team_assigns_unassigned_work_and_the_rm_gets_it(bench: Bench, page: Any) -> None:
    orphan = _alert(None, title=f"Unassigned outflow {bench.tag}", occurred_at=datetime.now(UTC).isoformat())
    late = _alert(bench.rms["bob"], title=f"Overdue complaint {bench.tag}", type="complaint")
    bench.insert(orphan, late)

    sign_in(page, bench, "maria")
    assert page.url.endswith("/manager")
    counts = page.locator("table.counts tbody tr").all_inner_texts()
    assert [row.split("\t")[0] for row in counts] == bench.team
    assert page.get_by_role("heading", name="Unassigned").is_visible()
    assert page.get_by_role("heading", name="Overdue").is_visible()
    overdue = page.locator("section", has=page.get_by_role("heading", name="Overdue"))
    assert f"Overdue complaint {bench.tag}" in overdue.inner_text()
    unassigned = page.locator("section", has=page.get_by_role("heading", name="Unassigned"))
    item = unassigned.locator("li", has_text=f"Unassigned outflow {bench.tag}")
    item.get_by_label("Assign to").select_option(bench.rms["alice"])
    item.get_by_role("button", name="Assign").click()
    page.wait_for_url("**/manager?done=assign")
    assert (
        f"Unassigned outflow {bench.tag}"
        not in page.locator("section", has=page.get_by_role("heading", name="Unassigned")).inner_text()
    )

    stored = _api(bench, "maria", f"/api/alerts/{orphan.alert_id}")
    assert stored["rm_id"] == bench.rms["alice"]
    assert [(e["action"], e["actor"], e["assigned_to"]) for e in stored["events"]][-1] == (
        "assign",
        "maria",
        bench.rms["alice"],
    )
    # The rule report draws its charts on the server.
    page.goto(f"{bench.url}/report")
    assert page.locator("svg.chart").count() == 3
    assert page.locator("table.report tbody tr[data-type=large_outflow]").count() == 1

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    sign_in(page, bench, "alice")
    assert page.locator(f'tr[data-alert-id="{orphan.alert_id}"]').count() == 1
    assert page.errors == []


def test_new_alerts_appear_without_a_reload_and_j_moves_between_them(bench: Bench, page: Any) -> None:
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/api/alerts/stream" in request.url else None)
    bench.insert(_alert(bench.rms["bob"], title=f"Older {bench.tag}"))
    sign_in(page, bench, "bob")
    page.evaluate("window.__sameDocument = true")
    fresh = _alert(
        bench.rms["bob"],
        severity="critical",
        title=f"Fresh {bench.tag}",
        occurred_at=(datetime.now(UTC) + timedelta(days=1)).isoformat(),
    )
    bench.insert(fresh)
    page.locator(f'tr[data-alert-id="{fresh.alert_id}"]').wait_for(timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True, "the page was not reloaded"
    assert streams, "the inbox listens to the API's stream of new alerts"
    assert re.fullmatch(r"\d+ new alert\(s\)", page.locator("#live").inner_text())
    order = page.locator("#inbox-rows tr").evaluate_all("rows => rows.map(r => r.dataset.alertId)")
    page.locator("body").press("j")
    assert page.evaluate("document.activeElement.closest('tr').dataset.alertId") == order[0]
    page.locator("body").press("j")
    assert page.evaluate("document.activeElement.closest('tr').dataset.alertId") == order[1]


def test_a_state_change_without_the_csrf_token_is_refused(bench: Bench, page: Any) -> None:
    target = _alert(bench.rms["alice"])
    bench.insert(target)
    sign_in(page, bench, "alice")
    page.goto(f"{bench.url}/alerts/{target.alert_id}")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    statuses = page.evaluate(
        """async ([id, token]) => {
            const api = await fetch(`/api/alerts/${id}/ack`, {method: "POST"});
            const forged = {method: "POST", headers: {"X-CSRF-Token": token + "x"}};
            const wrong = await fetch(`/api/alerts/${id}/ack`, forged);
            const form = await fetch(`/alerts/${id}/ack`, {method: "POST", body: new URLSearchParams({note: "x"})});
            return [api.status, (await api.json()).error, wrong.status, form.status];
        }""",
        [target.alert_id, token],
    )
    assert statuses == [403, "csrf_failed", 403, 403]
    assert _api(bench, "alice", f"/api/alerts/{target.alert_id}")["status"] == "open"
    # The page's own form carries the token and works.
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url("**done=ack")
    assert _api(bench, "alice", f"/api/alerts/{target.alert_id}")["status"] == "acknowledged"


def test_hostile_text_in_titles_and_facts_is_shown_as_text_and_never_runs(bench: Bench, page: Any) -> None:
    evil = _alert(
        bench.rms["alice"],
        title=HOSTILE,
        client_id=f"c-<b>{bench.tag}</b>",
        facts={"amount": HOSTILE, "limit": "1", "counterparty_bank": HOSTILE, HOSTILE: HOSTILE},
    )
    orphan = _alert(None, title=HOSTILE)
    bench.insert(evil, orphan)
    for who, path in (
        ("alice", "/inbox"),
        ("alice", f"/alerts/{evil.alert_id}"),
        ("alice", f"/clients/c-%3Cb%3E{bench.tag}%3C%2Fb%3E"),
        ("maria", "/manager"),
        ("maria", f"/alerts/{orphan.alert_id}"),
    ):
        page.context.clear_cookies()
        sign_in(page, bench, who)
        page.goto(f"{bench.url}{path}")
        page.wait_for_load_state()
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0, path
        assert HOSTILE in page.locator("main").inner_text(), path
    assert page.errors == []


def test_the_workbench_speaks_chinese_and_fits_a_phone(bench: Bench, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        alert = _alert(
            bench.rms["bob"],
            title="Outflow of 1,200,000.00 CNY to another bank",
            titles={"en": "Outflow of 1,200,000.00 CNY to another bank", "zh-CN": "向他行转出 1,200,000.00 元"},
        )
        bench.insert(alert)
        sign_in(page, bench, "bob", lang="zh")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert page.get_by_role("button", name="退出登录").is_visible()
        page.goto(f"{bench.url}/alerts/{alert.alert_id}")
        assert page.get_by_role("button", name="确认").is_visible()
        assert page.locator("h1").inner_text() == "向他行转出 1,200,000.00 元"  # the alert's title in Chinese
        assert "转出 1,200,000.00 CNY" in page.inner_text(".sentence")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        # Switched back per user: the choice is remembered in a cookie.
        page.get_by_role("link", name="English").click()
        page.goto(f"{bench.url}/alerts/{alert.alert_id}")
        assert page.get_by_role("button", name="Sign out").is_visible()
        assert page.locator("h1").inner_text() == "Outflow of 1,200,000.00 CNY to another bank"
    finally:
        context.close()


def test_an_rm_snoozes_a_type_for_a_client_from_the_client_page(bench: Bench, page: Any) -> None:
    from tests.support import read_to_end

    alert = _alert(bench.rms["alice"], type="large_inflow", severity="info", title="Inflow of 90,000.00 CNY")
    bench.insert(alert)
    bench.snapshot(client_id=alert.client_id, aum="650000.00", rm_id=bench.rms["alice"], tier="platinum")
    sign_in(page, bench, "alice")
    page.goto(f"{bench.url}/alerts/{alert.alert_id}")
    page.get_by_role("link", name="Client page").click()
    page.wait_for_url(f"**/clients/{alert.client_id}")
    assert "none" in page.inner_text("dl.cardlist")  # no snooze yet
    until = (datetime.now(UTC) + timedelta(days=14)).strftime("%Y-%m-%d")
    page.get_by_label("Alert type").select_option("large_inflow")
    page.get_by_label("Until").fill(until)
    page.get_by_label("Reason").fill("client abroad, asked not to be called")
    page.get_by_role("button", name="Snooze").click()
    page.wait_for_url("**done=snooze")
    assert page.get_by_role("status").inner_text() == "Snoozed."
    card = page.inner_text("dl.cardlist")
    assert "Large inflow" in card and "client abroad, asked not to be called" in card and "alice" in card
    assert "snoozed Large inflow until" in page.locator("ol.timeline li").first.inner_text()

    client = _api(bench, "alice", f"/api/clients/{alert.client_id}")
    [snooze] = client["snoozes"]
    assert (snooze["alert_type"], snooze["actor"], snooze["reason"]) == (
        "large_inflow",
        "alice",
        "client abroad, asked not to be called",
    )
    # A date means the end of that day in the bank's time zone (the test rules' Asia/Shanghai).
    end_of_day = datetime.fromisoformat(until).replace(tzinfo=ZoneInfo("Asia/Shanghai")) + timedelta(days=1)
    assert datetime.fromisoformat(snooze["until"]) == end_of_day
    # The control event went to the workers' controls topic, keyed by the client.
    settings = bench.extra["settings"]
    records = bench.run(lambda: read_to_end(settings.kafka_bootstrap, settings.controls_topic))
    mine = [r for r in records if r.key == alert.client_id.encode()]
    assert len(mine) == 1 and b'"kind":"snooze"' in mine[0].value
    # A snooze without a reason is refused with the reason why, and records nothing.
    page.get_by_label("Reason").fill(" ")
    page.get_by_role("button", name="Snooze").click()
    assert "reason" in page.get_by_role("alert").inner_text()
    assert len(_api(bench, "alice", f"/api/clients/{alert.client_id}")["snooze_history"]) == 1
    # Ops may look but not snooze.
    page.context.clear_cookies()
    sign_in(page, bench, "olga")
    page.goto(f"{bench.url}/clients/{alert.client_id}")
    assert page.get_by_role("button", name="Snooze").count() == 0
    assert page.errors == []
