"""Titles in English and Chinese, and priority (docs/rules.md, "Titles", "Priority").

Thresholds of tests/rules/thresholds.yaml (the story below walks through them):
tiers gold 10,000, platinum 100,000, diamond 1,000,000 (left below 800,000);
single limits platinum 100,000, diamond 300,000; drain 40% over 20 days;
velocity 3x / 5x the limit over 5 days; complaint follow-up 36 h; low
satisfaction at 3 or less; birthdays for diamond+ 5 days ahead (Kolkata time);
no RM contact for 40 days at diamond; dormancy after 100 days; maturity notice
10 days. Priority points: critical 60, warning 30, info 20; private 30,
diamond 16, platinum 12, gold 8, mass 2; complaint 8, complaint_unanswered 12,
aum_drain 4, birthday 1.
"""

from __future__ import annotations

import re

import pytest

from handlers import titles
from handlers.ruleset import Ruleset, parse_rules
from schemas.alerts import ALERT_TYPES, Alert
from streams.tools.synthetic import history
from tests.unit.builders import THRESHOLDS, Desk, at, client_event, deposit, interaction, maturing, one, tx

ACCOUNT = "acct-6222020200112233445"
CJK = re.compile(r"[\u4e00-\u9fff]")
AMOUNT = re.compile(r"\d{1,3}(?:,\d{3})*\.\d{2}")


def every_type(rules: Ruleset) -> list[Alert]:
    """One client's story that raises every alert type at least once."""
    desk = Desk(rules)
    kw = {"account": ACCOUNT}
    alerts = desk.send(
        client_event(at(), "onboarded", rm_id="rm-7", birth_date="1980-03-20"),
        deposit(at(hours=1), "1200000", **kw),  # new_client_first_txn; diamond
        maturing(at(hours=2), "td-1", "2026-04-01"),  # product_maturity on 22 March
        tx(at(days=1), "310000", bank="external", **kw),  # large_outflow, critical
        tx(at(days=2), "200000", bank="external", **kw),  # to platinum; aum_drain (510,000 of 1,200,000)
        tx(at(days=3), "50000", bank="internal", **kw),  # outflow_velocity (560,000 in 5 days)
        tx(at(days=4), "150000", "credit", bank="external", **kw),  # large_inflow
        deposit(at(days=5), "300000", **kw),  # tier_upgrade to diamond
        interaction(at(days=6), "complaint", severity="medium", channel="branch"),  # complaint, complaint_unanswered
        interaction(at(days=7), "feedback", channel="mobile", satisfaction=1),  # low_satisfaction
    )
    alerts += desk.advance(at(days=119))  # birthday, no_rm_contact, dormancy
    alerts += desk.send(deposit(at(days=120), "1", **kw))  # reactivation
    return alerts


@pytest.fixture(scope="module")
def story(rules: Ruleset) -> list[Alert]:
    return every_type(rules)


def test_the_story_raises_every_type(story: list[Alert]) -> None:
    assert sorted({a.type for a in story}) == sorted(ALERT_TYPES)


def test_every_type_has_both_titles_and_no_account_number(story: list[Alert]) -> None:
    for alert in story:
        assert alert.titles is not None and set(alert.titles) == {"en", "zh-CN"}, alert.type
        en, zh = alert.titles["en"], alert.titles["zh-CN"]
        assert en.strip() and zh.strip() and en != zh, alert.type
        assert CJK.search(zh) and not CJK.search(en), alert.type
        assert alert.title == en, "the test rules' locale is en"
        for text in (en, zh):
            assert ACCOUNT not in text and "6222020200112233445" not in text and "acct" not in text, text
        assert AMOUNT.findall(en) == AMOUNT.findall(zh), f"amounts are written alike: {en} / {zh}"


def test_amounts_in_yuan(story: list[Alert]) -> None:
    outflow = one(story, "large_outflow")
    assert outflow.titles == {
        "en": "Outflow of 310,000.00 CNY to another bank",
        "zh-CN": "向他行转出 310,000.00 元",
    }
    assert one(story, "large_inflow").titles == {
        "en": "Inflow of 150,000.00 CNY from another bank",
        "zh-CN": "他行转入 150,000.00 元",
    }
    assert titles.large_outflow(120_000_000, True, "CNY")[1] == "向他行转出 1,200,000.00 元"
    assert titles.large_outflow(120_000_000, False, "HKD") == (
        "Outflow of 1,200,000.00 HKD",
        "大额转出 1,200,000.00 HKD",
    )


def test_chinese_titles_read_as_an_rm_writes_them(story: list[Alert]) -> None:
    zh = {a.type: a.titles["zh-CN"] for a in story if a.titles is not None}
    assert zh["tier_downgrade"] == "客户降级：钻石 → 白金，资产 690,000.00 元"
    assert zh["tier_upgrade"] == "客户升级：白金 → 钻石，资产 1,090,000.00 元"
    assert zh["aum_drain"] == "20 天内向他行转出 510,000.00 元（占峰值资产 42.5%）"
    assert zh["outflow_velocity"] == "5 天内累计转出 560,000.00 元"
    assert zh["complaint"] == "客户投诉（较重），渠道：网点"
    assert zh["low_satisfaction"] == "客户满意度低（1/5）：反馈，渠道：手机银行"
    assert zh["new_client_first_txn"] == "新客户首笔交易：请于 2026-03-03 03:30（UTC+05:30）前致电致谢"
    assert zh["product_maturity"] == "产品 td-1 将于 2026-04-01 到期"
    assert zh["no_rm_contact"] == "已连续 40 天未联系客户"
    assert zh["dormancy"] == "客户已连续 100 天无主动往来"
    assert zh["reactivation"] == "客户沉寂 113 天后重新活跃"
    assert titles.new_client_first_txn(0, parse_rules(_shipped_zone()).timezone)[1] == (
        "新客户首笔交易：请于 1970-01-01 08:00（北京时间）前致电致谢"
    )


def _shipped_zone() -> str:
    return THRESHOLDS.read_text().replace("timezone: Asia/Kolkata", "timezone: Asia/Shanghai")


def test_title_is_in_the_rules_files_locale() -> None:
    chinese = parse_rules(THRESHOLDS.read_text().replace("locale: en", "locale: zh-CN"))
    for alert in every_type(chinese):
        assert alert.titles is not None and alert.title == alert.titles["zh-CN"]


def test_titles_of_a_synthetic_bank_carry_no_account_number(rules: Ruleset) -> None:
    records = list(history(2000, 60, seed=5))
    accounts = {str(v["account_id"]) for _, _, v in records if "account_id" in v}
    desk = Desk(rules)
    alerts = desk.send(*(value for _, _, value in records))
    assert len({a.type for a in alerts}) >= 8
    for alert in alerts:
        assert alert.titles is not None
        for text in alert.titles.values():
            assert not any(account in text for account in accounts), text


# ------------------------------------------------------------------ priority


def test_priority_is_severity_tier_and_type_points(rules: Ruleset, story: list[Alert]) -> None:
    severity = {"critical": 60, "warning": 30, "info": 20}
    tier = {"private": 30, "diamond": 16, "platinum": 12, "gold": 8, "mass": 2, None: 0}
    kind = {"complaint": 8, "complaint_unanswered": 12, "aum_drain": 4, "birthday": 1}
    for alert in story:
        expected = min(100, severity[alert.severity] + tier[alert.tier] + kind.get(alert.type, 0))
        assert alert.priority == expected, alert.type
    drain = one(story, "aum_drain")
    assert (drain.severity, drain.tier, drain.priority) == ("critical", "diamond", 80)
    upgrade = one(story, "tier_upgrade")
    assert (upgrade.tier, upgrade.priority) == ("diamond", 36), "a tier change scores its new tier"
    assert one(story, "birthday").priority == 37


def test_a_null_tier_scores_nothing_and_the_sum_is_capped(rules: Ruleset) -> None:
    complaint = one(Desk(rules).send(interaction(at(), "complaint", severity="high")), "complaint")
    assert complaint.tier is None and complaint.priority == 60 + 8
    generous = parse_rules(THRESHOLDS.read_text().replace("critical: 60,", "critical: 90,"))
    desk = Desk(generous)
    desk.send(deposit(at(days=-1), "6000000"))  # private
    assert one(desk.send(interaction(at(), "complaint")), "complaint").priority == 100


@pytest.mark.parametrize(("us", "text"), [(24 * 3600 * 10**6, "24"), (4 * 3600 * 10**6, "4"), (5400 * 10**6, "1.5")])
def test_hours_as_people_write_them(us: int, text: str) -> None:
    assert titles.hours_text(us) == text
