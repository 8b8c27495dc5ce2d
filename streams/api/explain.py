"""An alert's facts in plain words: what the rule compared with what, in English or Chinese.

Every sentence is built from the catalogue here and the alert's facts as
values (amounts formatted as "1,200,000.00 CNY", times in the bank's time zone
with their offset, e.g. "2026-03-01 18:00 UTC+08:00"); the page
escapes the result like any other text, so nothing in a fact can become
markup. A fact a sentence does not use is still listed under "All facts".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from streams.api.i18n import name


def money(value: str | None, currency: str) -> str:
    """`1200000.00` -> `1,200,000.00 CNY`; text that is not a number is shown as it is."""
    if value is None:
        return "?"
    try:
        return f"{Decimal(value):,.2f} {currency}"
    except (InvalidOperation, ValueError):
        return f"{value} {currency}"


def when(value: str | None, zone: tzinfo = UTC) -> str:
    """An RFC 3339 time in `zone` with its offset, `2026-03-01 18:00 UTC+08:00` (`UTC` when 0); other text as it is."""
    if not value:
        return "?"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        return value
    try:
        local = parsed.astimezone(zone)
    except (OverflowError, ValueError):
        local = parsed.astimezone(UTC)  # years 1 and 9999: the zone's offset would leave the calendar
    offset = local.strftime("%z")
    label = "UTC" if offset in ("", "+0000") else f"UTC{offset[:3]}:{offset[3:]}"
    return f"{local:%Y-%m-%d %H:%M} {label}"


def _percent(value: str | None) -> str:
    try:
        return f"{Decimal(value or '') * 100:.0f}%"
    except (InvalidOperation, ValueError):
        return str(value)


_SENTENCES: dict[str, dict[str, str]] = {
    "en": {
        "large_outflow": "Outflow {amount} ≥ limit {limit} for {tier}{where}.",
        "large_outflow_external": "; to another bank",
        "outflow_velocity": (
            "Outflows of {window_sum} in {window_days} days ≥ {warning_at} (the warning level for {tier}, "
            "whose single limit is {limit}); critical from {critical_at}."
        ),
        "aum_drain": (
            "{external_outflows} moved to other banks in {window_days} days ≥ {threshold} "
            "({fraction} of the highest AUM in those days, {peak_aum})."
        ),
        "tier_upgrade": "AUM {aum} ≥ the {to} floor of {floor}: from {from} to {to}.",
        "tier_downgrade": (
            "AUM {aum} < {downgrade_below} (the {from} floor of {floor} less the buffer): from {from} to {to}."
        ),
        "dormancy": "No customer activity since {quiet_since} (counted from {counted_from}): {period_days} days.",
        "reactivation": "Active again after {quiet_days} quiet days (quiet since {quiet_since}).",
        "complaint": "Complaint via {channel}, severity {severity}; the client is {tier}.",
        "complaint_satisfaction": " Satisfaction {satisfaction} of 5.",
        "large_inflow": "Inflow {amount} from another bank ≥ limit {limit} for {tier}.",
        "new_client_first_txn": "First transaction since onboarding on {onboarded_at}: thank-you call due by {due_by}.",
        "product_maturity": "Product {product_id} matures on {maturity_date}{amount}.",
        "product_amount": " ({amount})",
        "no_rm_contact": (
            "No RM contact since {last_rm_contact}; {period_days} days allowed (in the tier since {tier_since})."
        ),
        "no_rm_contact_ever": "No RM contact yet; {period_days} days allowed (in the tier since {tier_since}).",
        "birthday": "Birthday on {birthday}; the client is {tier}.",
        "complaint_unanswered": (
            "Complaint of {complained_at} not followed by RM contact within {follow_up_hours} hours."
        ),
        "low_satisfaction": "Satisfaction {satisfaction} of 5 after a {kind} via {channel}.",
        "onboarding": "onboarding",
        "last activity": "last activity",
        "never": "never",
    },
    "zh": {
        "large_outflow": "转出 {amount} ≥ {tier}客户单笔限额 {limit}{where}。",
        "large_outflow_external": "；转往他行",
        "outflow_velocity": (
            "{window_days} 天内累计转出 {window_sum} ≥ 预警线 {warning_at}（{tier}客户单笔限额 {limit}）；"
            "达到 {critical_at} 为紧急。"
        ),
        "aum_drain": (
            "{window_days} 天内转往他行 {external_outflows} ≥ {threshold}（期间最高资产 {peak_aum} 的 {fraction}）。"
        ),
        "tier_upgrade": "资产 {aum} ≥ {to}门槛 {floor}：由{from}升至{to}。",
        "tier_downgrade": "资产 {aum} < {downgrade_below}（{from}门槛 {floor} 扣除缓冲）：由{from}降至{to}。",
        "dormancy": "自 {quiet_since} 起（从{counted_from}算起）无客户主动活动：{period_days} 天。",
        "reactivation": "沉寂 {quiet_days} 天后重新活跃（自 {quiet_since} 起无活动）。",
        "complaint": "通过{channel}投诉，严重程度 {severity}；客户等级{tier}。",
        "complaint_satisfaction": "满意度 {satisfaction}/5。",
        "large_inflow": "他行转入 {amount} ≥ {tier}客户单笔限额 {limit}。",
        "new_client_first_txn": "{onboarded_at} 开户后的首笔交易：请在 {due_by} 前致电感谢。",
        "product_maturity": "产品 {product_id} 将于 {maturity_date} 到期{amount}。",
        "product_amount": "（{amount}）",
        "no_rm_contact": "自 {last_rm_contact} 起客户经理未联系；允许 {period_days} 天（自 {tier_since} 起为此等级）。",
        "no_rm_contact_ever": "客户经理尚未联系过该客户；允许 {period_days} 天（自 {tier_since} 起为此等级）。",
        "birthday": "生日 {birthday}；客户等级{tier}。",
        "complaint_unanswered": "{complained_at} 的投诉在 {follow_up_hours} 小时内未获客户经理跟进。",
        "low_satisfaction": "通过{channel}的{kind}后满意度为 {satisfaction}/5。",
        "onboarding": "开户",
        "last activity": "最近活动",
        "never": "从未",
    },
}


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def explain(alert: Mapping[str, Any], lang: str, currency: str, zone: tzinfo = UTC) -> str | None:
    """One sentence saying what the rule compared, or None for a type without a sentence (facts are listed)."""
    alert_type = str(alert.get("type"))
    words = _SENTENCES[lang]
    template = words.get(alert_type)
    if template is None:
        return None
    facts: Mapping[str, Any] = alert.get("facts") or {}
    tier = name(lang, "tier", alert.get("tier")) or "?"
    v = _Values({k: str(x) for k, x in facts.items()})
    for key in ("amount", "limit", "window_sum", "warning_at", "critical_at", "external_outflows", "threshold"):
        if key in facts and alert_type != "product_maturity":
            v[key] = money(facts.get(key), currency)
    for key in ("peak_aum", "aum", "floor", "downgrade_below"):
        if key in facts:
            v[key] = money(facts.get(key), currency)
    for key in ("quiet_since", "onboarded_at", "due_by", "tier_since", "complained_at"):
        if key in facts:
            v[key] = when(facts.get(key), zone)
    v["tier"] = tier
    if "fraction" in facts:
        v["fraction"] = _percent(facts.get("fraction"))
    for key in ("from", "to"):
        if key in facts:
            v[key] = name(lang, "tier", facts.get(key))
    if alert_type == "large_outflow":
        v["where"] = words["large_outflow_external"] if facts.get("counterparty_bank") == "external" else ""
    if alert_type == "dormancy":
        v["counted_from"] = words.get(str(facts.get("counted_from")), str(facts.get("counted_from", "?")))
    if alert_type == "no_rm_contact":
        last = facts.get("last_rm_contact")
        if last in (None, "never"):
            template = words["no_rm_contact_ever"]
        else:
            v["last_rm_contact"] = when(last, zone)
    if alert_type == "complaint":
        v["tier"] = name(lang, "tier", facts.get("tier")) if facts.get("tier") in _TIERS else tier
    if alert_type == "product_maturity":
        amount = facts.get("amount")
        shown = money(amount, str(facts.get("currency", currency)))
        v["amount"] = words["product_amount"].format(amount=shown) if amount else ""
    text = template.format_map(v)
    if alert_type == "complaint" and "satisfaction" in facts:
        text += words["complaint_satisfaction"].format_map(v)
    return text


_TIERS = frozenset({"mass", "gold", "platinum", "diamond", "private"})
