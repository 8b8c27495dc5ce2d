"""`clientpulse compare`: one history replayed through two rules files, and what would change, as text, JSON and HTML.

Each rules file's replay is exactly what `clientpulse backtest` runs
(handlers/replay.py over the workers' batch processor), its notifications
what `backtest --notifications` writes; handlers/whatif.py compares the two
sides. The renderers here take any `Comparison` and an `About` saying what the
sides are, so a comparison of two alert topics reports the same way.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import orjson
from markupsafe import Markup

from handlers.replay import ReplaySummary, UntilBeforeEvents
from handlers.ruleset import RulesError, Ruleset, load_rules
from handlers.timeutil import from_us, iso
from handlers.whatif import DEFAULT_EXAMPLES, Comparison, GroupRow, Label, Load, compare, side
from schemas.alerts import Alert
from streams.api.charts import difference_chart, line_chart, paired_bar_chart
from streams.api.explain import when
from streams.api.i18n import HTML_LANG, title_for
from streams.gc_tuning import tune_gc
from streams.tools.compare_words import name, word
from streams.tools.sharding import replay_file

RMS_SHOWN = 10
"""RMs listed in the text report (the largest changes); the HTML report shows twice as many, the JSON all."""


# ---------------------------------------------------------------------- the replays
@dataclass(frozen=True, slots=True)
class Replayed:
    """One rules file's replay of a history: the alerts in the order raised, the final clock, the summary."""

    alerts: list[Alert]
    clock_end: datetime | None
    events_clock: datetime | None
    summary: ReplaySummary


def replay_history(
    events: Path, rules: Ruleset, until: datetime | None, workers: int = 1, detected_at: datetime | None = None
) -> Replayed:
    """The alerts `clientpulse backtest EVENTS --rules ... [--until ...] [--workers N]` writes, in its order.

    The replay is backtest's own (streams/tools/sharding.py): over `workers`
    processes it gives the same alerts in the same order as one. OSError when
    the file cannot be read; UntilBeforeEvents when `until` is before the
    events' clock.
    """
    outcome = replay_file(events, rules, workers=workers, until=until, detected_at=detected_at or datetime.now(UTC))
    return Replayed(
        [Alert.model_validate_json(line) for line in outcome.alerts],
        from_us(outcome.clock) if outcome.clock else None,
        from_us(outcome.events_clock) if outcome.events_clock else None,
        outcome.summary,
    )


class LabelsError(ValueError):
    pass


def read_labels(path: Path) -> list[Label]:
    """The lines of `clientpulse export-labels`; LabelsError names the line that is not one."""
    labels = []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabelsError(f"cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a line must be a JSON object")
            labels.append(Label.from_record(record))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise LabelsError(f"{path} line {n}: {exc}") from None
    return labels


# ---------------------------------------------------------------------- shared by the renderers
@dataclass(frozen=True, slots=True)
class About:
    """What the two sides are, for the reports' heading (files and history, or topics and period)."""

    a_source: str
    b_source: str
    what: str
    labels_source: str | None = None


def _change(a: float, b: float) -> str | None:
    """B against A in percent; None when A has none (then B's are all new, or there is nothing)."""
    if not a:
        return None
    return f"{(b - a) / a * 100:+.1f}%"


def _change_text(lang: str, a: float, b: float) -> str:
    change = _change(a, b)
    if change is not None:
        return change
    return word(lang, "new") if b else "\u2013"


def _num(value: float) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"


def _busiest(lang: str, load: Load) -> str:
    if load.busiest_rm is None or load.busiest_day is None:
        return "0"
    return word(lang, "busiest", n=load.max, rm=load.busiest_rm, day=load.busiest_day.isoformat())


def _notify_rows(c: Comparison, lang: str) -> list[tuple[str, float, float, bool]]:
    """(label, A, B, indented) of the notifications table."""
    na, nb = c.a.notifications, c.b.notifications
    rows: list[tuple[str, float, float, bool]] = [(word(lang, "pushed"), na.pushed, nb.pushed, False)]
    for reason in ("critical", "within_budget", "unassigned"):
        rows.append(
            (word(lang, f"push_{reason}"), na.pushed_by_reason.get(reason, 0), nb.pushed_by_reason.get(reason, 0), True)
        )
    rows.append((word(lang, "held"), na.held, nb.held, False))
    for reason in ("quiet_hours", "budget"):
        rows.append(
            (word(lang, f"held_{reason}"), na.held_by_reason.get(reason, 0), nb.held_by_reason.get(reason, 0), True)
        )
    rows += [
        (word(lang, "digests"), na.digests, nb.digests, False),
        (word(lang, "digested"), na.digested, nb.digested, False),
        (word(lang, "waiting"), na.waiting, nb.waiting, False),
        (word(lang, "stale"), na.stale, nb.stale, False),
        (word(lang, "pushes_mean"), na.pushes_per_rm_day.mean, nb.pushes_per_rm_day.mean, False),
        (word(lang, "pushes_max"), na.pushes_per_rm_day.max, nb.pushes_per_rm_day.max, False),
    ]
    return rows


# ---------------------------------------------------------------------- text
def _width(text: str) -> int:
    """Columns on a terminal: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - _width(text))
    return fill + text if right else text + fill


def _clean(text: str) -> str:
    """Event text on a terminal: control characters shown as U+FFFD, never sent."""
    return "".join("\ufffd" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    cells = [list(header), *[list(r) for r in rows]]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(header))]
    return [
        indent + "  ".join(_pad(cell, w, i > 0) for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in cells
    ]


def _group_table(lang: str, rows: Sequence[GroupRow], kind: str, moved: bool = False) -> list[str]:
    header = [word(lang, f"col_{kind}"), "A", "B", word(lang, "col_both"), word(lang, "col_only_a")]
    header += [word(lang, "col_only_b")]
    if moved:
        header += [word(lang, "col_moved_out"), word(lang, "col_moved_in")]
    header.append(word(lang, "col_change"))
    body = []
    for r in rows:
        cells = [_clean(name(lang, kind, r.key)), *(f"{n:,}" for n in (r.a, r.b, r.both, r.only_a, r.only_b))]
        if moved:
            cells += [f"{r.moved_out:,}", f"{r.moved_in:,}"]
        cells.append(_change_text(lang, r.a, r.b))
        body.append(cells)
    return _table(header, body)


def _example_line(lang: str, e: dict[str, Any]) -> list[str]:
    label = e["label"]
    outcome = ""
    if label is not None:
        shown = name(lang, "outcome", label["outcome"]) if label["outcome"] else name(lang, "status", label["status"])
        outcome = f"  [{shown}]"
    head = (
        f"  {e['occurred_at']}  {name(lang, 'type', e['type'])}  {name(lang, 'severity', e['severity'])}  "
        f"{name(lang, 'tier', e['tier'] or 'none')}  P{e['priority'] if e['priority'] is not None else '-'}  "
        f"{e['client_id']}  {e['rm_id'] or word(lang, 'unassigned')}"
    )
    facts = ", ".join(f"{k}={v}" for k, v in e["facts"].items())
    return [_clean(head + outcome), _clean(f"      {title_for(e, lang)}"), _clean(f"      {facts}")]


def render_text(c: Comparison, about: About, lang: str = "en", rms_shown: int = RMS_SHOWN) -> str:
    out = [word(lang, "title", a=c.a.rule_version, b=c.b.rule_version)]
    out.append("  " + word(lang, "rules_of", side="A", source=about.a_source, version=c.a.rule_version))
    out.append("  " + word(lang, "rules_of", side="B", source=about.b_source, version=c.b.rule_version))
    out.append("  " + word(lang, "history", what=about.what))
    if c.days:
        out.append(
            "  "
            + word(
                lang,
                "period",
                first=c.days[0].isoformat(),
                last=c.days[-1].isoformat(),
                tz=c.timezone,
                days=len(c.days),
                rms=c.rms,
            )
        )
    else:
        out.append("  " + word(lang, "no_days"))

    out += ["", word(lang, "alerts")]
    header = ["", "A", "B", word(lang, "col_both"), word(lang, "col_only_a"), word(lang, "col_only_b")]
    totals = [word(lang, "total"), *(f"{n:,}" for n in (c.a.alerts, c.b.alerts, c.both, c.only_in_a, c.only_in_b))]
    out += _table([*header, word(lang, "col_change")], [[*totals, _change_text(lang, c.a.alerts, c.b.alerts)]])

    out += ["", word(lang, "by_type")]
    out += _group_table(lang, c.by_type, "type")
    out += ["", word(lang, "by_severity")]
    out += _group_table(lang, c.by_severity, "severity", moved=True)
    out += ["", word(lang, "by_tier")]
    out += _group_table(lang, c.by_tier, "tier", moved=True)
    out.append("  " + word(lang, "moved_note", what=word(lang, "severity_word") + " / " + word(lang, "tier_word")))

    out += ["", word(lang, "by_rm", shown=min(rms_shown, len(c.by_rm)), total=len(c.by_rm))]
    out += _group_table(lang, c.by_rm[:rms_shown], "rm")

    out += ["", word(lang, "load")]
    la, lb = c.a.load, c.b.load
    out += _table(
        ["", "A", "B", word(lang, "col_change")],
        [
            [word(lang, "load_mean"), f"{la.mean:.2f}", f"{lb.mean:.2f}", _change_text(lang, la.mean, lb.mean)],
            [
                word(lang, "load_active"),
                f"{la.active_mean:.2f}",
                f"{lb.active_mean:.2f}",
                _change_text(lang, la.active_mean, lb.active_mean),
            ],
            [word(lang, "load_max"), _busiest(lang, la), _busiest(lang, lb), _change_text(lang, la.max, lb.max)],
        ],
    )
    out.append(
        "  "
        + word(
            lang,
            "load_note",
            rms=c.rms,
            days=len(c.days),
            rm_days=f"{la.rm_days:,}",
            a=c.a.unassigned,
            b=c.b.unassigned,
            tz=c.timezone,
        )
    )

    out += ["", word(lang, "notifications")]
    rows = [
        [("  " if indented else "") + label, _num(a), _num(b), _change_text(lang, a, b)]
        for label, a, b, indented in _notify_rows(c, lang)
    ]
    out += _table(["", "A", "B", word(lang, "col_change")], rows)

    out += ["", word(lang, "changed"), "  " + word(lang, "changed_note", n=f"{c.changed:,}")]
    if c.changed_by_type:
        out += _table(
            [word(lang, "col_type"), "n"], [[name(lang, "type", t), f"{n:,}"] for t, n in c.changed_by_type.items()]
        )
    if c.severity_moves:
        out.append("  " + word(lang, "severity_moves"))
        out += _table(
            ["A", "B", "n"],
            [
                [name(lang, "severity", a), name(lang, "severity", b), f"{n:,}"]
                for (a, b), n in c.severity_moves.items()
            ],
            indent="    ",
        )

    examples = c.as_json()["examples"]
    per_type = c.extra.get("examples_per_type", DEFAULT_EXAMPLES)
    for key, title in (("only_in_a", "only_a_examples"), ("only_in_b", "only_b_examples")):
        out += ["", word(lang, title), "  " + word(lang, "examples_note", n=per_type)]
        if not examples[key]:
            out.append("  " + word(lang, "no_examples"))
        for e in examples[key]:
            out += _example_line(lang, e)

    out += ["", word(lang, "labels")]
    if c.labels is None:
        out.append("  " + word(lang, "no_labels"))
    else:
        out.append(
            "  " + word(lang, "labels_note", n=f"{c.labels.total.labelled:,}", source=about.labels_source or "-")
        )
        if c.labels.open:
            out.append("  " + word(lang, "labels_open", n=c.labels.open))
        keys = (
            "labelled",
            "in_a",
            "useful_lost",
            "not_useful_dropped",
            "useful_kept",
            "not_useful_kept",
            "labels_only_b",
            "outside",
        )
        fields = [k if k != "labels_only_b" else "only_in_b" for k in keys]
        out += _table(
            [word(lang, "col_type"), *(word(lang, f"col_{k}") for k in keys)],
            [
                [name(lang, "type", r.type) if r.type != "total" else word(lang, "total")]
                + [f"{getattr(r, f):,}" for f in fields]
                for r in [*c.labels.rows, c.labels.total]
            ],
        )
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- HTML
SPREAD_BUCKETS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 14), (15, 29), (30, None))
"""RM-days grouped by their number of alerts (15 is the shipped daily push budget)."""


def _buckets(lang: str) -> list[tuple[str, int, int | None]]:
    out = []
    for low, high in SPREAD_BUCKETS:
        if high is None:
            label = word(lang, "spread_top", low=low)
        elif low == high:
            label = str(low)
        else:
            label = word(lang, "spread_bucket", low=low, high=high)
        out.append((label, low, high))
    return out


def _spread_count(load: Load, low: int, high: int | None) -> int:
    return sum(days for n, days in load.spread.items() if n >= low and (high is None or n <= high))


def _finalize(value: Any) -> Any:
    """Every value the template prints: event text's control characters as U+FFFD (then escaped)."""
    return _clean(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("streams.tools", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _css() -> str:
    return (resources.files("streams.tools") / "templates" / "compare.css").read_text("utf-8")


def render_html(c: Comparison, about: About, lang: str = "en") -> str:
    """The report as one HTML file: styles inline (allowed by their hash alone), charts as SVG, no script."""
    css = _css()
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    days = [d.isoformat() for d in c.days]
    a_name, b_name = f"A {c.a.rule_version}", f"B {c.b.rule_version}"

    def pair(
        title: str, a: Sequence[float], b: Sequence[float], height: int = 220, width: int = 720, short: bool = False
    ) -> Markup:
        names = ("A", "B") if short else (a_name, b_name)
        return Markup(line_chart(days, [(names[0], a), (names[1], b)], title, width=width, height=height))

    types = [r.key for r in c.by_type]
    per_type = [
        (
            t,
            pair(
                f"{name(lang, 'type', t)}: {word(lang, 'chart_per_type')}",
                c.a.per_day.get(t, []),
                c.b.per_day.get(t, []),
                height=170,
                width=360,
                short=True,
            ),
        )
        for t in types
    ]
    la, lb = c.a.load, c.b.load
    load_chart = paired_bar_chart(
        [
            (word(lang, "load_mean"), [la.mean, lb.mean]),
            (word(lang, "load_active"), [la.active_mean, lb.active_mean]),
            (word(lang, "load_max"), [la.max, lb.max]),
        ],
        ["A", "B"],
        word(lang, "chart_load"),
    )
    spread_chart = paired_bar_chart(
        [(label, [_spread_count(la, low, high), _spread_count(lb, low, high)]) for label, low, high in _buckets(lang)],
        ["A", "B"],
        word(lang, "chart_spread"),
    )
    total_a, total_b = c.a.per_day.get("total", []), c.b.per_day.get("total", [])
    difference = difference_chart(
        days, [b - a for a, b in zip(total_a, total_b, strict=True)], word(lang, "chart_difference")
    )
    rms = c.by_rm[: RMS_SHOWN * 2]
    rm_chart = paired_bar_chart(
        [(_clean(name(lang, "rm", r.key)), [r.a, r.b]) for r in rms], ["A", "B"], word(lang, "chart_rms")
    )
    na, nb = c.a.notifications, c.b.notifications
    notify_chart = paired_bar_chart(
        [
            (word(lang, "pushed"), [na.pushed, nb.pushed]),
            (word(lang, "held"), [na.held, nb.held]),
            (word(lang, "digests"), [na.digests, nb.digests]),
            (word(lang, "digested"), [na.digested, nb.digested]),
        ],
        ["A", "B"],
        word(lang, "chart_notify"),
    )
    data = c.as_json()
    template = _environment().get_template("compare.html")
    return template.render(
        c=c,
        about=about,
        lang=lang,
        html_lang=HTML_LANG[lang],
        css=Markup(css),  # the package's own file, hashed for the page's Content-Security-Policy
        css_hash=digest,
        t=lambda key, **kw: word(lang, key, **kw),
        n=lambda kind, value: name(lang, kind, value),
        change=lambda a, b: _change_text(lang, a, b),
        num=_num,
        busiest=lambda load: _busiest(lang, load),
        title_of=lambda e: title_for(e, lang),
        chart_total=pair(word(lang, "chart_total"), total_a, total_b),
        per_type=per_type,
        chart_load=Markup(load_chart),
        chart_spread=Markup(spread_chart),
        chart_difference=Markup(difference),
        when=when,
        chart_rms=Markup(rm_chart),
        chart_pushes=pair(word(lang, "chart_pushes"), na.per_day["pushes"], nb.per_day["pushes"]),
        chart_digests=pair(word(lang, "chart_digests"), na.per_day["digests"], nb.per_day["digests"]),
        chart_notify=Markup(notify_chart),
        notify_rows=_notify_rows(c, lang),
        rms=rms,
        examples=data["examples"],
        examples_per_type=c.extra.get("examples_per_type", DEFAULT_EXAMPLES),
    )


# ---------------------------------------------------------------------- the command
def _replay_note(side_name: str, path: Path, replayed: Replayed) -> str:
    s = replayed.summary
    clock = replayed.clock_end.isoformat() if replayed.clock_end else "-"
    return (
        f"{side_name} ({path}): {sum(s.events_by_topic.values()):,} events, {s.alerts:,} alerts, "
        f"{sum(s.suppressed.values()):,} suppressed, {sum(s.dead_letters.values()):,} dead letters, "
        f"{s.bad_lines:,} unreadable lines; clock ended at {clock}"
    )


def run_compare(args: argparse.Namespace) -> int:
    if args.examples < 0:
        print("clientpulse compare: --examples must be 0 or more", file=sys.stderr)
        return 2
    if args.live_vs_shadow:
        return run_live_vs_shadow(args)
    if args.events is None:
        print("clientpulse compare: give the history (EVENTS.jsonl), or --live-vs-shadow", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("clientpulse compare: --workers must be 1 or more", file=sys.stderr)
        return 2
    paths: list[Path] = args.rules or []
    if len(paths) != 2:
        print("clientpulse compare: give exactly two rules files: --rules A.yaml --rules B.yaml", file=sys.stderr)
        return 2
    inputs = _rules_and_labels(paths, args.labels)
    if inputs is None:
        return 2
    rules, labels = inputs
    tune_gc()
    detected_at = datetime.now(UTC)
    replayed: list[Replayed] = []
    for path, ruleset in zip(paths, rules, strict=True):
        try:
            replayed.append(replay_history(args.events, ruleset, args.until, args.workers, detected_at))
        except OSError as exc:
            print(f"clientpulse: cannot read {args.events}: {exc.strerror}", file=sys.stderr)
            return 2
        except UntilBeforeEvents as exc:
            print(
                f"clientpulse: --until {args.until.isoformat()} is before the events: their clock already reached "
                f"{iso(exc.watermark)} (the clock never goes back); give a later --until or leave it out",
                file=sys.stderr,
            )
            return 2
        print(_replay_note("AB"[len(replayed) - 1], path, replayed[-1]), file=sys.stderr)
    sides = [side(r.alerts, ruleset, clock_end=r.clock_end) for r, ruleset in zip(replayed, rules, strict=True)]
    comparison = compare(sides[0], sides[1], timezone=rules[0].timezone, labels=labels, examples=args.examples)
    first = replayed[0]
    records = sum(first.summary.events_by_topic.values()) + first.summary.bad_lines
    clock = first.clock_end.isoformat() if first.clock_end else "-"
    comparison.extra.update(
        {
            "examples_per_type": args.examples,
            "history": {
                "events": str(args.events),
                "records": records,
                "clock_end": clock,
                "until": args.until.isoformat() if args.until else None,
                "rules": {"a": str(paths[0]), "b": str(paths[1])},
            },
        }
    )
    about = About(
        str(paths[0]),
        str(paths[1]),
        f"{args.events}, {records:,} records; clock ended at {clock}",
        str(args.labels) if args.labels is not None else None,
    )
    return _write_reports(comparison, about, args)


def run_live_vs_shadow(args: argparse.Namespace) -> int:
    """The live alerts topic against the shadow's over [--since, --until): what the candidate rules changed live.

    Side A is the live workers' `rm.alerts.v1`, side B the shadow's
    `rm.alerts.shadow.v1` (docs/operations.md, "Shadow run"); the alerts are
    read as published, once each, and compared as a replay's would be. The
    notifications of each side are the notifier's decisions over those alerts
    with the side's rules file (`--rules` live, `--rules` candidate; by default
    both the settings' rules file).
    """
    from streams.settings import ConfigError, load_settings
    from streams.tools.alert_topics import read_alerts

    if args.since is None or args.until is None:
        print("clientpulse compare --live-vs-shadow: give --since and --until (the period to compare)", file=sys.stderr)
        return 2
    if args.events is not None:
        print("clientpulse compare --live-vs-shadow reads the two alert topics: give no history file", file=sys.stderr)
        return 2
    settings = load_settings()
    paths: list[Path] = args.rules or [settings.rules_path, settings.rules_path]
    if len(paths) != 2:
        print("clientpulse compare --live-vs-shadow: give no --rules, or two (live, then candidate)", file=sys.stderr)
        return 2
    inputs = _rules_and_labels(paths, args.labels)
    if inputs is None:
        return 2
    rules, labels = inputs
    topics = (settings.alerts_topic, settings.shadow_alerts_topic)
    try:
        alerts = [read_alerts(settings, topic, args.since, args.until) for topic in topics]
    except (ConfigError, ValueError) as exc:
        print(f"clientpulse compare: {exc}", file=sys.stderr)
        return 2
    sides = [
        side(found, ruleset, clock_end=args.until, rule_version=_version_of(found))
        for found, ruleset in zip(alerts, rules, strict=True)
    ]
    period = (args.since.astimezone(rules[0].timezone).date(), args.until.astimezone(rules[0].timezone).date())
    comparison = compare(
        sides[0], sides[1], timezone=rules[0].timezone, labels=labels, period=period, examples=args.examples
    )
    window = f"{args.since.isoformat()} to {args.until.isoformat()}"
    comparison.extra.update(
        {
            "examples_per_type": args.examples,
            "live_vs_shadow": {
                "a": topics[0],
                "b": topics[1],
                "since": args.since.isoformat(),
                "until": args.until.isoformat(),
            },
        }
    )
    about = About(
        f"{topics[0]} (live)",
        f"{topics[1]} (shadow)",
        f"alerts that occurred from {window}",
        str(args.labels) if args.labels is not None else None,
    )
    return _write_reports(comparison, about, args)


def _version_of(alerts: Sequence[dict[str, Any]]) -> str | None:
    """The rules version the topic's alerts carry (the last one, if it changed within the period)."""
    return str(alerts[-1].get("rule_version")) if alerts and alerts[-1].get("rule_version") else None


def _rules_and_labels(
    paths: Sequence[Path], labels_path: Path | None
) -> tuple[list[Ruleset], list[Label] | None] | None:
    """The two rules files and the labels file read, or None once what is wrong has been said."""
    try:
        rules = [load_rules(p) for p in paths]
    except RulesError as exc:
        print(f"clientpulse: {exc}", file=sys.stderr)
        return None
    if labels_path is None:
        return rules, None
    try:
        return rules, read_labels(labels_path)
    except LabelsError as exc:
        print(f"clientpulse compare: {exc}", file=sys.stderr)
        return None


def _write_reports(comparison: Comparison, about: About, args: argparse.Namespace) -> int:
    """The text report on stdout, and the JSON and HTML files asked for."""
    sys.stdout.write(render_text(comparison, about, args.lang))
    sys.stdout.flush()
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(comparison.as_json(), option=orjson.OPT_INDENT_2) + b"\n")
    if args.html is not None:
        args.html.write_text(render_html(comparison, about, args.lang), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    return 0
