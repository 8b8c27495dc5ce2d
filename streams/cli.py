"""The `clientpulse` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from datetime import UTC, date, datetime
from datetime import time as dt_time
from pathlib import Path

from handlers.ruleset import RulesError, Ruleset, load_rules
from streams.settings import ConfigError, Settings, load_settings, refuse_shadow

TIME_FORMS = "a date such as 2027-06-01 (00:00 UTC) or a time with an offset such as 2027-06-01T09:30:00+08:00"


def _parse_time(text: str) -> datetime:
    """A date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time with an offset."""
    value: datetime | None = None
    if len(text) == 10:
        try:
            value = datetime.combine(date.fromisoformat(text), dt_time(0), tzinfo=UTC)
        except ValueError:
            value = None
    if value is None:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a date or time: {text!r}; use {TIME_FORMS}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"a time needs an offset: {text!r}; use {value.isoformat()}+00:00 (UTC) or {TIME_FORMS}"
        ) from None
    return value


def _load(rules_path: Path | None = None, *, shadow: bool = False) -> tuple[Settings, Ruleset]:
    """Settings and rules, or exit with a message naming the problem (nothing consumed yet).

    `shadow` (`worker --shadow`) turns shadow mode on; without it CLIENTPULSE_SHADOW decides.
    """
    settings = load_settings(**({"shadow": True} if shadow else {}))
    try:
        rules = load_rules(rules_path or settings.rules_path)
    except RulesError as exc:
        raise ConfigError(f"clientpulse: {exc}") from None
    return settings, rules


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def cmd_worker(args: argparse.Namespace) -> int:
    settings, rules = _load(shadow=args.shadow)
    _setup_logging(settings.log_level)
    from streams.worker.run import run_worker

    return run_worker(settings, rules)


def cmd_notifier(args: argparse.Namespace) -> int:
    settings, rules = _load()
    refuse_shadow(settings, "notifier")
    _setup_logging(settings.log_level)
    from streams.notifier.run import run_notifier

    return run_notifier(settings, rules)


def cmd_deliver(args: argparse.Namespace) -> int:
    settings, rules = _load()
    refuse_shadow(settings, "deliver")
    _setup_logging(settings.log_level)
    from streams.deliver.service import run_deliver

    return run_deliver(settings, rules)


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.tools.embedded import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port).start()
    print(f"Tansu broker listening on {broker.bootstrap} (memory storage); Ctrl-C stops it", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop and broker.process is not None and broker.process.poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    settings = load_settings()
    from streams.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings, check_partitions=True))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.file}: valid, rule_version {rules.rule_version}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from streams.tools.backtest import run_backtest

    if args.shard is not None:
        given = [f"--{name}" for name in ("out", "summary", "notifications") if getattr(args, name) is not None]
        problem = None
        if args.out_dir is None:
            problem = "needs --out-dir DIR"
        elif given:
            problem = f"takes no {', '.join(given)}"
        elif args.workers != 1:
            problem = "is one process: it takes no --workers"
        if problem is not None:
            print(
                f"clientpulse backtest: --shard K/N {problem}: a shard writes its alerts, their order and its "
                "summary into --out-dir, and `clientpulse backtest-merge` joins the shards",
                file=sys.stderr,
            )
            return 2
    elif args.out_dir is not None:
        print("clientpulse backtest: --out-dir is for --shard K/N; use --out for a whole run", file=sys.stderr)
        return 2
    return run_backtest(
        args.events,
        args.rules,
        args.out,
        args.until,
        args.summary,
        args.notifications,
        workers=args.workers,
        detected_at=args.detected_at,
        shard=args.shard,
        out_dir=args.out_dir,
    )


def cmd_backtest_merge(args: argparse.Namespace) -> int:
    from streams.tools.backtest_merge import run_backtest_merge

    return run_backtest_merge(args.shards, args.out, args.summary, args.notifications, args.rules)


def _workers(text: str) -> int:
    from streams.tools.sharding import MAX_WORKERS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of processes: {text!r}") from None
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{value}: give 1 to {MAX_WORKERS} processes")
    return value


def _shard(text: str) -> object:
    from streams.tools.sharding import ShardSpecError, parse_shard

    try:
        return parse_shard(text)
    except ShardSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_compare(args: argparse.Namespace) -> int:
    from streams.tools.compare import run_compare

    return run_compare(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from streams.tools.simulate import run_simulate

    return run_simulate(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.tools.demo import run_demo

    return run_demo(args)


def cmd_redrive(args: argparse.Namespace) -> int:
    from streams.tools.redrive import run_redrive

    return run_redrive(args)


def cmd_sink(args: argparse.Namespace) -> int:
    settings, rules = _load()
    refuse_shadow(settings, "sink")
    _setup_logging(settings.log_level)
    from streams.sink.service import run_sink

    return run_sink(settings, rules, with_api=not args.no_api)


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.tools.bench import run_bench

    return run_bench(args)


def cmd_report(args: argparse.Namespace) -> int:
    from streams.tools.labels import run_report

    return run_report(args)


def cmd_export_labels(args: argparse.Namespace) -> int:
    from streams.tools.labels import run_export_labels

    return run_export_labels(args)


def cmd_screenshots(args: argparse.Namespace) -> int:
    from streams.tools.screenshots import run_screenshots

    return run_screenshots(args)


def cmd_bench_api(args: argparse.Namespace) -> int:
    from streams.tools.bench_api import run_bench_api

    return run_bench_api(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clientpulse", description="Relationship-manager alerts from bank events.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run a stream worker (Faust)")
    p.add_argument(
        "--shadow",
        action="store_true",
        help="run as a shadow (as CLIENTPULSE_SHADOW=true): the rules on the live input in a group of its own, "
        "alerts to the shadow alerts topic only",
    )
    p.set_defaults(func=cmd_worker)
    sub.add_parser("notifier", help="run a notifier: pushes and digests for RMs (Faust)").set_defaults(
        func=cmd_notifier
    )
    sub.add_parser("deliver", help="deliver pushes and digests to webhooks, WeCom or DingTalk robots").set_defaults(
        func=cmd_deliver
    )

    p = sub.add_parser("broker", help="run the embedded Tansu broker in the foreground")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=cmd_broker)

    sub.add_parser("topics", help="create the topics with their partition counts").set_defaults(func=cmd_topics)

    p = sub.add_parser("rules", help="validate a rules file")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("backtest", help="replay a topic dump (JSON lines) through the rules")
    p.add_argument("events", type=Path)
    p.add_argument(
        "--rules", type=Path, default=None, help="rules file (default: CLIENTPULSE_RULES or the shipped one)"
    )
    p.add_argument("--out", type=Path, default=None, help="alerts as JSON lines (default: stdout)")
    p.add_argument("--until", type=_parse_time, default=None, help="advance the clock to this time at the end")
    p.add_argument("--summary", type=Path, default=None, help="also write the summary as JSON here")
    p.add_argument(
        "--notifications", type=Path, default=None, help="also write the pushes and digests the notifier would send"
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="replay over this many processes, the history split by client (same alerts, same order)",
    )
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="K/N",
        help="run only shard K of N (K from 0, as JOB_COMPLETION_INDEX), into --out-dir; join with backtest-merge",
    )
    p.add_argument("--out-dir", type=Path, default=None, help="with --shard: folder for the shard's files")
    p.add_argument(
        "--detected-at",
        type=_parse_time,
        default=None,
        help="the alerts' detected_at (default: now); give the same to every shard of one run",
    )
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser(
        "compare",
        help="replay a topic dump through two rules files and report what would change (docs/whatif.md)",
    )
    p.add_argument("events", type=Path, nargs="?", default=None, help="the history (not with --live-vs-shadow)")
    p.add_argument("--rules", type=Path, action="append", help="rules file A, then B (give --rules twice)")
    p.add_argument("--labels", type=Path, default=None, help="stored outcomes (clientpulse export-labels)")
    p.add_argument("--html", type=Path, default=None, help="also write the report as one self-contained HTML file")
    p.add_argument("--json", type=Path, default=None, help="also write the comparison as JSON here")
    p.add_argument(
        "--until",
        type=_parse_time,
        default=None,
        help="advance the clock to this time at the end (with --live-vs-shadow: end of the period)",
    )
    p.add_argument("--examples", type=int, default=5, help="examples per alert type in each list (default 5)")
    p.add_argument("--workers", type=int, default=1, help="replay each rules file over N processes (as backtest)")
    p.add_argument(
        "--live-vs-shadow",
        action="store_true",
        help="compare the live alerts topic with the shadow's over --since/--until instead of replaying a history",
    )
    p.add_argument("--since", type=_parse_time, default=None, help="with --live-vs-shadow: start of the period")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="language of the text and HTML reports")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "backtest-merge",
        help="join the outputs of `backtest --shard K/N` runs into one backtest's alerts and summary",
    )
    p.add_argument("shards", type=Path, nargs="+", help="folders holding shard-K-of-N.* files (or summary files)")
    p.add_argument("--out", type=Path, default=None, help="alerts as JSON lines (default: stdout)")
    p.add_argument("--summary", type=Path, default=None, help="also write the merged summary as JSON here")
    p.add_argument(
        "--notifications", type=Path, default=None, help="also write the pushes and digests the notifier would send"
    )
    p.add_argument("--rules", type=Path, default=None, help="the rules file the shards ran (checked by its version)")
    p.set_defaults(func=cmd_backtest_merge)

    p = sub.add_parser("simulate", help="feed a synthetic bank into the input topics")
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--rate", type=float, default=200.0, help="events per second")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--history-days",
        type=float,
        default=0.0,
        help="onboard the bank this many days ago and send its recent past first (wall-clock stamps)",
    )
    p.add_argument("--dump", type=Path, default=None, help="write a replay file instead of producing")
    p.add_argument("--events", type=int, default=10_000, help="with --dump: number of events")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="broker + database + worker + sink + synthetic bank, alerts printed")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--rate", type=float, default=50.0, help="events per second")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "redrive",
        help="publish chosen dead letters again to their original topics (each once)",
        description="Publish dead letters again to their original topics, keyed by client and partitioned as Kafka's "
        "default partitioner does, with their original bytes and headers. Each dead letter is re-driven once: "
        "the ledger topic clientpulse.redriven.v1 remembers them. Filters combine (and); none selects all.",
    )
    p.add_argument("--reason", action="append", help="only this dead-letter reason (repeatable), e.g. invalid_json")
    p.add_argument("--topic", action="append", help="only letters from this original topic (repeatable)")
    p.add_argument(
        "--since", type=_parse_time, default=None, help="received at or after this time (" + TIME_FORMS + ")"
    )
    p.add_argument("--until", type=_parse_time, default=None, help="received before this time (" + TIME_FORMS + ")")
    p.add_argument("--dry-run", action="store_true", help="print what would be published; publish nothing")
    p.set_defaults(func=cmd_redrive)

    p = sub.add_parser("sink", help="store alerts in PostgreSQL and serve the RM API")
    p.add_argument("--no-api", action="store_true", help="store alerts only")
    p.set_defaults(func=cmd_sink)

    from streams.api.auth import token_command

    p = sub.add_parser("token", help="print the salted hash of an API token read from stdin (for the token config)")
    p.add_argument("action", nargs="?", choices=["hash"], default="hash", help="hash (the default)")
    p.set_defaults(func=lambda _args: token_command())

    p = sub.add_parser("report", help="the rule report from the alert store (per type: volume, SLA, usefulness)")
    p.add_argument("--since", type=_parse_time, default=None, help="start (default: --days before --until)")
    p.add_argument("--until", type=_parse_time, default=None, help="end (default: now)")
    p.add_argument("--days", type=int, default=30, help="length of the period when --since is not given")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export-labels", help="closed alerts and their outcomes as JSON lines (what-if input)")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    p.add_argument("--since", type=_parse_time, default=None, help="only alerts that occurred from this time")
    p.set_defaults(func=cmd_export_labels)

    p = sub.add_parser("screenshots", help="pictures of a running demo's workbench (Playwright + Chromium)")
    p.add_argument("url", help="the workbench address the demo printed")
    p.add_argument("--tokens", type=Path, default=Path(".demo/tokens.json"))
    p.add_argument("--role", choices=["rm", "manager", "ops"], default="rm")
    p.add_argument("--lang", choices=["en", "zh"], default="en")
    p.add_argument("--out", type=Path, default=Path("docs/images"))
    p.add_argument("--suffix", default="")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=800)
    p.set_defaults(func=cmd_screenshots)

    p = sub.add_parser("bench-api", help="the workbench and the store at a bank's size (a database of its own)")
    p.add_argument("--alerts", type=int, default=5_000_000)
    p.add_argument("--rms", type=int, default=1000)
    p.add_argument("--clients", type=int, default=200_000)
    p.add_argument("--users", type=int, default=50, help="signed-in users at once")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the users work")
    p.add_argument("--think", type=float, default=1.0, help="mean seconds between one user's requests")
    p.add_argument("--fresh-due", type=int, default=2000, help="open alerts that fell due in the last minute")
    p.add_argument("--database", default="clientpulse_bench_api", help="name of the database of its own")
    p.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=cmd_bench_api)

    p = sub.add_parser("bench", help="measure throughput and latency")
    p.add_argument("--quick", action="store_true", help="a small run, under a minute")
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--clients", type=int, default=None)
    p.add_argument("--rate", type=float, default=2000.0, help="offered load for the latency phase")
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
