"""Every alert title, in English and in Chinese as an RM would write it (docs/rules.md, "Titles").

One function per alert type returns `(en, zh-CN)`; the rules pass the numbers
they compared. Amounts are grouped the same way in both (`1,200,000.00`), in
yuan in Chinese when the base currency is CNY. Titles never carry an account
number: nothing here receives one. Plain f-strings: a title is built for every
alert raised.
"""

from __future__ import annotations

import zoneinfo
from decimal import Decimal

from handlers.money import cents_to_display
from handlers.timeutil import US_PER_HOUR, from_us, iso

Titles = tuple[str, str]
"""(en, zh-CN), in the order of schemas.values.LOCALES."""

TIER_ZH = {"mass": "大众", "gold": "金卡", "platinum": "白金", "diamond": "钻石", "private": "私人银行"}
CHANNEL_ZH = {
    # interaction channels
    "branch": "网点",
    "phone": "电话",
    "mobile": "手机银行",
    "online": "网上银行",
    "onsite": "上门",
}
INTERACTION_ZH = {
    "visit": "拜访",
    "call": "电话沟通",
    "message": "消息",
    "meeting": "面谈",
    "complaint": "投诉",
    "feedback": "反馈",
    "inquiry": "咨询",
    "product_purchase": "购买产品",
}
COMPLAINT_SEVERITY_ZH = {"low": "一般", "medium": "较重", "high": "严重"}
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
ZONE_NAMES_ZH = {"Asia/Shanghai": "北京时间", "Asia/Hong_Kong": "香港时间", "Asia/Macau": "澳门时间"}


def _yuan(cents: int, currency: str) -> str:
    """`1,200,000.00 元` for CNY, `1,200,000.00 USD` for another base currency."""
    unit = "元" if currency == "CNY" else currency
    return f"{cents_to_display(cents)} {unit}"


def hours_text(us: int) -> str:
    """A duration in hours as people write it: `24`, `4`, `1.5`."""
    return (
        format(Decimal(us) / US_PER_HOUR, "f").rstrip("0").rstrip(".") if us % US_PER_HOUR else str(us // US_PER_HOUR)
    )


def tier_upgrade(old: str, new: str, aum: int, currency: str) -> Titles:
    return (
        f"Upgraded from {old} to {new}: AUM {cents_to_display(aum)} {currency}",
        f"客户升级：{TIER_ZH[old]} → {TIER_ZH[new]}，资产 {_yuan(aum, currency)}",
    )


def tier_downgrade(old: str, new: str, aum: int, currency: str) -> Titles:
    return (
        f"Downgraded from {old} to {new}: AUM {cents_to_display(aum)} {currency}",
        f"客户降级：{TIER_ZH[old]} → {TIER_ZH[new]}，资产 {_yuan(aum, currency)}",
    )


def large_outflow(cents: int, external: bool, currency: str) -> Titles:
    if external:
        return (
            f"Outflow of {cents_to_display(cents)} {currency} to another bank",
            f"向他行转出 {_yuan(cents, currency)}",
        )
    return f"Outflow of {cents_to_display(cents)} {currency}", f"大额转出 {_yuan(cents, currency)}"


def outflow_velocity(cents: int, days: int, currency: str) -> Titles:
    return (
        f"Outflows of {cents_to_display(cents)} {currency} in {days} days",
        f"{days} 天内累计转出 {_yuan(cents, currency)}",
    )


def aum_drain(cents: int, share: str, days: int, currency: str) -> Titles:
    return (
        f"{cents_to_display(cents)} {currency} ({share}% of peak AUM) moved to other banks in {days} days",
        f"{days} 天内向他行转出 {_yuan(cents, currency)}（占峰值资产 {share}%）",
    )


def dormancy(days: int) -> Titles:
    return f"No customer activity for {days} days", f"客户已连续 {days} 天无主动往来"


def reactivation(days: int) -> Titles:
    return f"Active again after {days} quiet days", f"客户沉寂 {days} 天后重新活跃"


def complaint(severity: str | None, channel: str) -> Titles:
    en_severity = f" ({severity} severity)" if severity else ""
    zh_severity = f"（{COMPLAINT_SEVERITY_ZH[severity]}）" if severity else ""
    return f"Complaint{en_severity} via {channel}", f"客户投诉{zh_severity}，渠道：{CHANNEL_ZH[channel]}"


def large_inflow(cents: int, currency: str) -> Titles:
    return f"Inflow of {cents_to_display(cents)} {currency} from another bank", f"他行转入 {_yuan(cents, currency)}"


def new_client_first_txn(due_by: int, zone: zoneinfo.ZoneInfo) -> Titles:
    """The English title gives the call's deadline in UTC, the Chinese one in the bank's time zone."""
    local = from_us(due_by).astimezone(zone)
    zone_name = ZONE_NAMES_ZH.get(zone.key) or f"UTC{local.isoformat()[-6:]}"
    return (
        f"First transaction of a new client: thank-you call due by {iso(due_by)[:16].replace('T', ' ')} UTC",
        f"新客户首笔交易：请于 {local.isoformat()[:16].replace('T', ' ')}（{zone_name}）前致电致谢",
    )


def product_maturity(product_id: str, maturity_date: str) -> Titles:
    return f"Product {product_id} matures on {maturity_date}", f"产品 {product_id} 将于 {maturity_date} 到期"


def no_rm_contact(days: int) -> Titles:
    return f"No RM contact for {days} days", f"已连续 {days} 天未联系客户"


def birthday(month_day: str, days_ahead: int) -> Titles:
    month, day = int(month_day[:2]), int(month_day[3:])
    when_en = "today" if days_ahead == 0 else f"in {days_ahead} day{'s' if days_ahead != 1 else ''}"
    when_zh = "今天" if days_ahead == 0 else f" {days_ahead} 天后"
    return (
        f"Birthday {when_en} ({day} {MONTHS[month - 1]}): send greetings",
        f"客户{when_zh}（{month}月{day}日）生日，请送上祝福",
    )


def complaint_unanswered(follow_up: int) -> Titles:
    hours = hours_text(follow_up)
    return (
        f"Complaint not followed up within {hours} hours",
        f"客户投诉 {hours} 小时内未获回访",
    )


def low_satisfaction(score: int, kind: str, channel: str) -> Titles:
    return (
        f"Low satisfaction ({score}/5) after {kind.replace('_', ' ')} via {channel}",
        f"客户满意度低（{score}/5）：{INTERACTION_ZH[kind]}，渠道：{CHANNEL_ZH[channel]}",
    )
