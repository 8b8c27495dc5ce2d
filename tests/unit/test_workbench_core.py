"""The workbench's policy and wording without a database: closing rules, SLAs, the report, plain words, charts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handlers.access import Principal
from handlers.lifecycle import ClosingError, check_closing, is_useful
from handlers.report import build_report, report_days
from handlers.sla import due_by, sla_state
from streams.api.charts import bar_chart, per_day_chart
from streams.api.cursors import CursorError, decode_position, encode_position
from streams.api.explain import explain, money, when
from streams.api.i18n import name, title_for, word
from streams.sink.escalation import managers_by_rm, pushes_for
from tests.unit.builders import RULES

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
KEY = b"k" * 32


def test_closing_needs_the_outcomes_and_reasons_of_the_lifecycle() -> None:
    assert check_closing("resolve", "contacted", None) == "contacted"
    assert check_closing("dismiss", "duplicate", None) == "duplicate"
    assert check_closing("dismiss", "false_positive", "the client said so") == "false_positive"
    assert check_closing("ack", None, None) is None
    for action, outcome, note, says in (
        ("resolve", None, None, "contacted, retained, sold, no_action_needed"),
        ("resolve", "false_positive", None, "resolve needs one of"),
        ("dismiss", "sold", None, "false_positive, not_relevant, duplicate, unreachable"),
        ("dismiss", "false_positive", None, "note: required"),
        ("ack", "contacted", None, "ack takes no outcome"),
    ):
        with pytest.raises(ClosingError, match=says):
            check_closing(action, outcome, note)


def test_useful_means_resolved_with_an_outcome_that_led_somewhere() -> None:
    assert is_useful("resolved", "sold") and is_useful("resolved", "contacted")
    assert not is_useful("resolved", "no_action_needed")
    assert not is_useful("dismissed", "false_positive") and not is_useful("resolved", None)


def test_due_by_and_the_sla_badges() -> None:
    # tests/rules/thresholds.yaml gives every type the default SLA unless it names it.
    hours = RULES.sla["large_outflow"] / 3_600_000_000
    due = due_by(RULES, "large_outflow", T0)
    assert due == T0 + timedelta(hours=hours)
    soon = due - timedelta(hours=hours * float(RULES.sla_due_soon) / 2)

    def state(status: str, now: datetime, handled: datetime | None = None) -> str:
        return sla_state(RULES, status=status, occurred_at=T0, due=due, now=now, handled_at=handled)

    assert state("open", T0 + timedelta(minutes=1)) == "ok"
    assert state("open", soon) == "due_soon"
    assert state("open", due) == "overdue"
    assert state("acknowledged", due + timedelta(days=3), handled=due - timedelta(minutes=1)) == "met"
    assert state("resolved", due + timedelta(days=3), handled=due + timedelta(minutes=1)) == "missed"
    assert sla_state(RULES, status="open", occurred_at=T0, due=None, now=T0) == "ok"
    # A type the rules file does not know gets the default SLA.
    assert due_by(RULES, "from_a_newer_worker", T0) == T0 + timedelta(microseconds=RULES.sla_default)


def test_the_report_counts_per_type_and_day_with_shares_or_nothing() -> None:
    since, until = T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=3)
    report = build_report(
        since,
        until,
        [{"type": "complaint", "day": date(2026, 3, 2), "n": 4}],
        [
            {"type": "complaint", "alerts": 4, "sla_decided": 4, "sla_met": 3, "median_ack_seconds": 5400.0,
             "closed": 2, "useful": 1},
            {"type": "dormancy", "alerts": 0, "sla_decided": 0, "sla_met": 0, "median_ack_seconds": None,
             "closed": 0, "useful": 0},
        ],
    )  # fmt: skip
    assert report["days"] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    complaint, dormancy = report["types"]
    assert [d["alerts"] for d in complaint["per_day"]] == [0, 4, 0]
    assert complaint["acknowledged_within_sla"] == 0.75 and complaint["useful_share"] == 0.5
    assert complaint["alerts_per_day"] == 1.33 and complaint["median_seconds_to_acknowledge"] == 5400.0
    assert dormancy["acknowledged_within_sla"] is None and dormancy["useful_share"] is None
    assert report_days(until, until) == []


def test_facts_in_plain_words_in_both_languages() -> None:
    outflow = {
        "type": "large_outflow",
        "tier": "platinum",
        "facts": {"amount": "1200000.00", "limit": "500000.00", "counterparty_bank": "external"},
    }
    assert explain(outflow, "en", "CNY") == (
        "Outflow 1,200,000.00 CNY ≥ limit 500,000.00 CNY for platinum; to another bank."
    )
    assert explain(outflow, "zh", "CNY") == "转出 1,200,000.00 CNY ≥ 白金客户单笔限额 500,000.00 CNY；转往他行。"
    upgrade = {"type": "tier_upgrade", "tier": "gold",
               "facts": {"from": "mass", "to": "gold", "aum": "60000.00", "floor": "50000.00"}}  # fmt: skip
    assert explain(upgrade, "en", "CNY") == "AUM 60,000.00 CNY ≥ the gold floor of 50,000.00 CNY: from mass to gold."
    facts = {"period_days": "60", "tier_since": "2026-01-01T00:00:00+00:00", "last_rm_contact": "never"}
    contact = {"type": "no_rm_contact", "tier": "diamond", "facts": facts}
    shanghai = ZoneInfo("Asia/Shanghai")
    assert explain(contact, "en", "CNY", shanghai) == (
        "No RM contact yet; 60 days allowed (in the tier since 2026-01-01 08:00 UTC+08:00)."
    )
    contact["facts"] = {**facts, "last_rm_contact": "2026-02-01T02:00:00+00:00"}
    assert "自 2026-02-01 10:00 UTC+08:00 起客户经理未联系" in str(explain(contact, "zh", "CNY", shanghai))
    # Missing facts read as "?", unknown types have no sentence (their facts are listed instead).
    assert explain({"type": "large_outflow", "tier": None, "facts": {}}, "en", "CNY") == ("Outflow ? ≥ limit ? for ?.")
    assert explain({"type": "something_new", "facts": {"a": "b"}}, "en", "CNY") is None
    assert money("12.5", "CNY") == "12.50 CNY" and money("<b>", "CNY") == "<b> CNY"
    assert when("2026-03-01T18:00:00+08:00") == "2026-03-01 10:00 UTC" and when("later") == "later"
    assert when("2026-03-01T10:00:00+00:00", shanghai) == "2026-03-01 18:00 UTC+08:00"
    assert when("2026-07-01T10:00:00+00:00", ZoneInfo("America/New_York")) == "2026-07-01 06:00 UTC-04:00"
    assert when("9999-12-31T23:59:59+00:00", shanghai) == "9999-12-31 23:59 UTC"  # no room for the offset


def test_words_titles_and_names() -> None:
    assert title_for({"title": "Outflow", "titles": {"en": "Outflow", "zh-CN": "转出"}}, "zh") == "转出"
    assert title_for({"title": "Outflow", "titles": None}, "zh") == "Outflow"
    assert word("en", "signed_in_as", name="amy", role="rm") == "Signed in as amy (rm)"
    assert word("zh", "signout") == "退出登录" and word("en", "signout") == "Sign out"
    assert name("en", "outcome", "no_action_needed") == "no action needed"
    assert name("zh", "type", "unheard_of") == "unheard_of"


def test_charts_escape_every_text_and_need_no_style_attribute() -> None:
    report = {
        "days": ["2026-03-01", "2026-03-02"],
        "types": [{"type": "complaint", "alerts": 3, "per_day": [{"alerts": 1}, {"alerts": 2}]}],
    }
    svg = per_day_chart(report, {"complaint": "<script>x</script>"}, 'a "title"')
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&quot;title&quot;" in svg
    assert "style=" not in svg and svg.count("<rect") == 3  # two bars and one legend swatch
    bars = bar_chart([("<b>", 0.5), ("none", None)], "t", percent=True)
    assert "&lt;b&gt;" in bars and "50%" in bars and "style=" not in bars
    assert per_day_chart({"days": [], "types": []}, {}, "t") == ""


def test_inbox_positions_are_signed_for_their_caller_and_purpose() -> None:
    alice, bob = Principal("alice", "rm", rm_id="rm-1"), Principal("bob", "rm", rm_id="rm-2")
    cursor = encode_position(KEY, alice, (85, T0, "a-1"), "inbox")
    assert decode_position(KEY, alice, cursor, "inbox") == (85, T0, "a-1")
    for who, purpose, text in ((bob, "inbox", cursor), (alice, "other", cursor), (alice, "inbox", cursor + "x")):
        with pytest.raises(CursorError):
            decode_position(KEY, who, text, purpose)


def test_escalation_pushes_go_to_each_manager_or_to_unassigned() -> None:
    principals = [
        Principal("maria", "manager", team=frozenset({"rm-1", "rm-2"})),
        Principal("wei", "manager"),
        Principal("alice", "rm", rm_id="rm-1"),
    ]
    teams = {"wei": frozenset({"rm-2"}), "sso.manager@bank": frozenset({"rm-3"})}
    managers = managers_by_rm(principals, teams)
    assert managers == {"rm-1": ["maria"], "rm-2": ["maria", "wei"], "rm-3": ["sso.manager@bank"]}
    alert = {
        "alert_id": "a1", "rm_id": "rm-2", "type": "complaint", "severity": "critical", "priority": 90,
        "client_id": "c-1", "title": "Complaint", "occurred_at": T0.isoformat(),
        "due_by": (T0 + timedelta(hours=24)).isoformat(), "escalated_at": (T0 + timedelta(hours=25)).isoformat(),
    }  # fmt: skip
    pushes = pushes_for(alert, managers)
    assert [(p.key, p.push_id) for p in pushes] == [("maria", "escalation:a1:maria"), ("wei", "escalation:a1:wei")]
    lone = pushes_for({**alert, "rm_id": None}, managers)
    assert [(p.key, p.manager) for p in lone] == [("unassigned", None)]
