"""The words of `clientpulse compare`'s reports in English and Chinese (types, tiers and severities: the workbench's).

Looked up by key, never built from event text, like the workbench's catalogue
(streams/api/i18n.py), whose names of types, tiers and severities the reports
use so both speak of an alert the same way.
"""

from __future__ import annotations

from typing import Any

from streams.api.i18n import name as workbench_name

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "What-if: rules {b} against {a}",
        "side_a": "A",
        "side_b": "B",
        "rules_of": "{side}: {source} (rule_version {version})",
        "history": "History: {what}",
        "period": "Days {first} to {last} ({tz}), {days} days; {rms} RMs",
        "no_days": "No alerts under either rules file.",
        "offline": "This report is one file: it fetches nothing and runs no script.",
        "alerts": "Alerts",
        "total": "total",
        "col_a": "A",
        "col_b": "B",
        "col_both": "both",
        "col_only_a": "only A",
        "col_only_b": "only B",
        "col_moved_out": "moved out",
        "col_moved_in": "moved in",
        "col_change": "change",
        "new": "new",
        "by_type": "By type",
        "by_severity": "By severity",
        "by_tier": "By tier",
        "moved_note": (
            "An alert raised under both rules files whose {what} differs counts under its own {what} on each side "
            "(moved out of one, moved in to the other)."
        ),
        "severity_word": "severity",
        "tier_word": "tier",
        "col_type": "type",
        "col_severity": "severity",
        "col_tier": "tier",
        "col_rm": "RM",
        "by_rm": "RMs with the largest change ({shown} of {total})",
        "load": "Load per RM and day",
        "load_note": (
            "{rms} RMs x {days} days = {rm_days} RM-days; alerts without an RM ({a} under A, {b} under B) are not "
            "counted here. Days are local days in {tz}."
        ),
        "load_mean": "mean per RM-day",
        "load_active": "mean per RM-day with alerts",
        "load_max": "busiest RM-day",
        "busiest": "{n} ({rm}, {day})",
        "notifications": "Notifications (what the notifier would send)",
        "pushed": "pushed",
        "push_critical": "critical",
        "push_within_budget": "within the daily budget",
        "push_unassigned": "unassigned (to the managers)",
        "held": "held for a digest",
        "held_quiet_hours": "in the quiet hours",
        "held_budget": "over the daily budget",
        "digests": "digests",
        "digested": "alerts in digests",
        "waiting": "still waiting for a digest",
        "stale": "not notified: too late (older than remember_days)",
        "pushes_mean": "pushes per RM-day (mean)",
        "pushes_max": "pushes on the busiest RM-day",
        "changed": "Raised under both, but different",
        "changed_note": (
            "{n} alerts raised under both rules files differ in severity, tier, priority, facts or title."
        ),
        "severity_moves": "Severity under A → under B",
        "only_a_examples": "Examples only in A: B would no longer raise these",
        "only_b_examples": "Examples only in B: new under B",
        "changed_examples": "Examples raised under both, with what changed",
        "examples_note": "Up to {n} per type, the highest priority first.",
        "no_examples": "None.",
        "col_when": "occurred at",
        "col_client": "client",
        "col_alert": "alert",
        "col_facts": "facts",
        "col_outcome": "stored outcome",
        "col_fields": "changed",
        "col_under_a": "under A",
        "col_under_b": "under B",
        "labels": "Known outcomes (labels)",
        "labels_note": (
            "{n} closed alerts from {source}. Useful: resolved with an outcome other than no action needed. "
            "Lost and dropped count labelled alerts A raises and B would not."
        ),
        "labels_open": "{n} labels of alerts not closed yet are not counted.",
        "col_labelled": "labelled",
        "col_in_a": "raised by A",
        "col_useful_lost": "useful lost",
        "col_not_useful_dropped": "not useful dropped",
        "col_useful_kept": "useful kept",
        "col_not_useful_kept": "not useful kept",
        "col_labels_only_b": "only in B",
        "col_outside": "in neither",
        "no_labels": "No labels given (--labels LABELS.jsonl, from clientpulse export-labels).",
        "chart_total": "Alerts per day: A against B",
        "chart_per_type": "Alerts per day by type: A against B",
        "chart_difference": "B minus A, per day",
        "chart_load": "Alerts per RM-day: A against B",
        "chart_spread": "RM-days by their number of alerts",
        "spread_bucket": "{low} to {high}",
        "spread_top": "{low} or more",
        "chart_rms": "Alerts per RM: A against B",
        "chart_pushes": "Pushes per day: A against B",
        "chart_digests": "Digests per day: A against B",
        "chart_notify": "Notifications: A against B",
        "unassigned": "unassigned",
        "no_tier": "no tier",
        "useful": "useful",
        "not_useful": "not useful",
        "generated": "Made by clientpulse compare.",
    },
    "zh": {
        "title": "规则模拟：{b} 对比 {a}",
        "side_a": "A",
        "side_b": "B",
        "rules_of": "{side}：{source}（rule_version {version}）",
        "history": "历史数据：{what}",
        "period": "日期 {first} 至 {last}（{tz}），共 {days} 天；客户经理 {rms} 名",
        "no_days": "两套规则均未产生提醒。",
        "offline": "本报告为单一文件：不访问网络，不运行脚本。",
        "alerts": "提醒数",
        "total": "合计",
        "col_a": "A",
        "col_b": "B",
        "col_both": "两者皆有",
        "col_only_a": "仅 A",
        "col_only_b": "仅 B",
        "col_moved_out": "移出",
        "col_moved_in": "移入",
        "col_change": "变化",
        "new": "新增",
        "by_type": "按类型",
        "by_severity": "按级别",
        "by_tier": "按等级",
        "moved_note": "两套规则都产生、但{what}不同的提醒，在每一方按各自的{what}计数（从一组移出，移入另一组）。",
        "severity_word": "级别",
        "tier_word": "等级",
        "col_type": "类型",
        "col_severity": "级别",
        "col_tier": "等级",
        "col_rm": "客户经理",
        "by_rm": "变化最大的客户经理（{total} 名中的 {shown} 名）",
        "load": "每名客户经理每日的提醒数",
        "load_note": (
            "{rms} 名客户经理 × {days} 天 = {rm_days} 个经理日；未分配客户经理的提醒（A {a} 条，B {b} 条）不计入。"
            "日期按 {tz} 当地时间。"
        ),
        "load_mean": "每个经理日平均",
        "load_active": "有提醒的经理日平均",
        "load_max": "最忙的经理日",
        "busiest": "{n}（{rm}，{day}）",
        "notifications": "通知（通知服务将发送的内容）",
        "pushed": "即时推送",
        "push_critical": "紧急",
        "push_within_budget": "每日额度内",
        "push_unassigned": "未分配（发给主管）",
        "held": "留待摘要",
        "held_quiet_hours": "免打扰时段",
        "held_budget": "超出每日额度",
        "digests": "摘要",
        "digested": "摘要中的提醒",
        "waiting": "仍在等待摘要",
        "stale": "未通知：到达过晚（早于 remember_days）",
        "pushes_mean": "每个经理日推送数（平均）",
        "pushes_max": "最忙经理日的推送数",
        "changed": "两者皆有但内容不同",
        "changed_note": "两套规则都产生的提醒中，有 {n} 条的级别、等级、优先级、数据或标题不同。",
        "severity_moves": "级别：A → B",
        "only_a_examples": "仅 A 的示例：B 不再产生",
        "only_b_examples": "仅 B 的示例：B 新增",
        "changed_examples": "两者皆有但不同的示例",
        "examples_note": "每种类型最多 {n} 条，优先级高的在前。",
        "no_examples": "无。",
        "col_when": "发生时间",
        "col_client": "客户",
        "col_alert": "提醒",
        "col_facts": "数据",
        "col_outcome": "已记录的结果",
        "col_fields": "变化项",
        "col_under_a": "A 下",
        "col_under_b": "B 下",
        "labels": "已知结果（标注）",
        "labels_note": (
            "来自 {source} 的 {n} 条已关闭提醒。有效：以“无需处理”以外的结果解决。"
            "“丢失”与“去除”统计 A 产生而 B 不再产生的已标注提醒。"
        ),
        "labels_open": "{n} 条尚未关闭的提醒的标注不计入。",
        "col_labelled": "已标注",
        "col_in_a": "A 产生",
        "col_useful_lost": "丢失的有效提醒",
        "col_not_useful_dropped": "去除的无效提醒",
        "col_useful_kept": "保留的有效提醒",
        "col_not_useful_kept": "保留的无效提醒",
        "col_labels_only_b": "仅 B",
        "col_outside": "两者皆无",
        "no_labels": "未提供标注（--labels LABELS.jsonl，由 clientpulse export-labels 导出）。",
        "chart_total": "每日提醒数：A 对比 B",
        "chart_per_type": "各类型每日提醒数：A 对比 B",
        "chart_difference": "每日差额（B 减 A）",
        "chart_load": "每个经理日的提醒数：A 对比 B",
        "chart_spread": "按提醒数统计的经理日",
        "spread_bucket": "{low} 至 {high}",
        "spread_top": "{low} 及以上",
        "chart_rms": "各客户经理的提醒数：A 对比 B",
        "chart_pushes": "每日推送数：A 对比 B",
        "chart_digests": "每日摘要数：A 对比 B",
        "chart_notify": "通知：A 对比 B",
        "unassigned": "未分配",
        "no_tier": "无等级",
        "useful": "有效",
        "not_useful": "无效",
        "generated": "由 clientpulse compare 生成。",
    },
}


def word(lang: str, key: str, **values: Any) -> str:
    text = WORDS[lang].get(key) or WORDS["en"][key]
    return text.format(**values) if values else text


def name(lang: str, kind: str, value: str | None) -> str:
    """A type, tier, severity or outcome as the workbench names it; the groups of no tier and no RM too."""
    if kind == "tier" and value == "none":
        return word(lang, "no_tier")
    if kind == "rm" and value == "unassigned":
        return word(lang, "unassigned")
    if kind == "rm":
        return value or word(lang, "unassigned")
    return workbench_name(lang, kind, value)
