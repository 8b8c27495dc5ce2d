"""`clientpulse demo`: the whole service on one machine, alerts printed as they fire, the workbench open.

Starts what is missing (a Tansu broker unless KAFKA_BOOTSTRAP is set, a
private PostgreSQL unless DATABASE_URL is set), a worker, the notifier and the
alert sink as child processes, and feeds a synthetic bank. It shows, for each
RM, how many alerts were pushed at once and how many wait for the digest.
Ctrl-C (or --duration) stops everything it started, children included.

The sink serves the workbench on 127.0.0.1 with demo people whose tokens are
written to .demo/tokens.json (readable by the owner only): a few RMs of the
synthetic bank, their manager and an ops user. The demo's rules are the
shipped ones with SLAs of minutes instead of hours, so escalations and the
manager's overdue list show within the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

from streams.api.auth import hash_token
from streams.kafka_client import client_kwargs
from streams.settings import DEFAULT_RULES, load_settings
from streams.tools.embedded import (
    LOCAL_POSTGRES,
    EmbeddedBroker,
    EmbeddedError,
    EmbeddedPostgres,
    create_database,
    drop_database,
    free_port,
    python_cmd,
    terminate_group,
)
from streams.tools.simulate import produce_live
from streams.topics import ensure_topics

DEMO_PEOPLE: list[dict[str, Any]] = [
    {"name": "amy.chen", "role": "rm", "rm_id": "rm-001"},
    {"name": "li.wang", "role": "rm", "rm_id": "rm-002"},
    {"name": "omar.haddad", "role": "rm", "rm_id": "rm-003"},
    {"name": "wei.zhang", "role": "manager", "team": ["rm-001", "rm-002", "rm-003", "rm-004", "rm-005"]},
    {"name": "noc", "role": "ops"},
]
"""RM ids are the synthetic bank's (rm-001 ...), so the demo's RMs see alerts."""
DEMO_SLA_HOURS = {
    "complaint": "0.05",
    "complaint_unanswered": "0.02",
    "new_client_first_txn": "0.05",
    "large_outflow": "0.05",
    "aum_drain": "0.05",
}
DEMO_SLA_DEFAULT_HOURS = "0.15"
UNASSIGNED_EVERY = 25
"""Every 25th synthetic client has no RM: the manager's Unassigned list has work."""

COLOURS = {"critical": "\033[31m", "warning": "\033[33m", "info": "\033[36m"}
RESET = "\033[0m"
PROGRESS_SECONDS = 5.0
HISTORY_DAYS = 45.0
"""The synthetic bank's recent past, sent first: birthdays and unanswered complaints come due in it."""


def format_alert(alert: dict[str, Any], colour: bool = False) -> str:
    """One readable line per alert (no account numbers: titles never carry them)."""
    at = str(alert.get("occurred_at", ""))[11:19]
    level = str(alert.get("severity", ""))
    severity = f"{level.upper():<8}"
    if colour:
        severity = f"{COLOURS.get(level, '')}{severity}{RESET}"
    return (
        f"{at} {severity} {alert.get('type', ''):<20} {alert.get('client_id', ''):<10} "
        f"{alert.get('rm_id') or 'unassigned':<10} {alert.get('tier') or '-':<8} {alert.get('title', '')}"
    )


class DemoError(Exception):
    """The demo cannot run; the message says what to set."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else "") or type(exc).__name__


class Demo:
    def __init__(self, args: argparse.Namespace, local_postgres: str = LOCAL_POSTGRES) -> None:
        self.args = args
        self.workdir = Path(".demo").resolve()
        self.children: list[subprocess.Popen[bytes]] = []
        self.broker: EmbeddedBroker | None = None
        self.database: EmbeddedPostgres | None = None
        self.local_postgres = local_postgres
        self.local_database: str | None = None
        self.env = dict(os.environ)
        self.sent = 0
        self.alerts = 0
        self.started = datetime.now(UTC)
        self.worker_port = free_port()
        self.notifier_port = free_port()
        self.colour = sys.stdout.isatty()
        self.alerts_by_rm: defaultdict[str, set[str]] = defaultdict(set)
        self.pushed_by_rm: defaultdict[str, set[str]] = defaultdict(set)
        self.digested_by_rm: defaultdict[str, set[str]] = defaultdict(set)
        self.api_port = 0
        self.people: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        print(text, flush=True)

    def start_services(self) -> None:
        self.workdir.mkdir(exist_ok=True)
        if not self.env.get("KAFKA_BOOTSTRAP"):
            try:
                self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log").start()
            except (EmbeddedError, OSError) as exc:
                raise DemoError(
                    f"the embedded broker did not start ({_first_line(exc)}); set KAFKA_BOOTSTRAP"
                ) from None
            self.env["KAFKA_BOOTSTRAP"] = self.broker.bootstrap
            # The embedded broker's offset reports need these (see README, "Embedded broker").
            self.env.setdefault("CLIENTPULSE_RECOVERY_CHECK", "false")
            self.env.setdefault("CLIENTPULSE_END_OFFSET_PROBE", "true")
            self.env.setdefault("CLIENTPULSE_SESSION_TIMEOUT", "6")
            self.say(f"broker    embedded Tansu on {self.broker.bootstrap}")
        else:
            self.say(f"broker    {self.env['KAFKA_BOOTSTRAP']} (KAFKA_BOOTSTRAP)")
        self.say(f"database  {self.choose_database()}")
        self.env["CLIENTPULSE_WEB_PORT"] = str(self.worker_port)
        self.env.setdefault("CLIENTPULSE_API_PORT", str(free_port()))
        self.api_port = int(self.env["CLIENTPULSE_API_PORT"])
        self.env.setdefault("CLIENTPULSE_API_HOST", "127.0.0.1")
        self.env.setdefault("CLIENTPULSE_SESSION_COOKIE_SECURE", "false")  # plain HTTP on loopback
        self.env.setdefault("CLIENTPULSE_ESCALATION_SECONDS", "10")
        self.env.setdefault("CLIENTPULSE_WORKBENCH_POLL_SECONDS", "5")
        self.env.setdefault("CLIENTPULSE_RULES", str(self.demo_rules()))
        self.env["CLIENTPULSE_API_TOKENS"] = json.dumps({"tokens": self.demo_tokens()})
        self.env.setdefault("CLIENTPULSE_DATA_DIR", str(self.workdir / "worker-data"))
        self.env.setdefault("CLIENTPULSE_TICK_SECONDS", "2")
        self.env.setdefault("CLIENTPULSE_SNAPSHOT_SECONDS", "5")

    def choose_database(self) -> str:
        """DATABASE_URL; else a fresh database on 127.0.0.1:5432 (dropped at the end); else a private pgserver.

        Returns the line that says which; a failure is one DemoError line naming what to set.
        """
        if self.env.get("DATABASE_URL"):
            return "DATABASE_URL"
        name = f"clientpulse_demo_{uuid.uuid4().hex[:10]}"
        url = asyncio.run(create_database(self.local_postgres, name))
        if url is not None:
            self.env["DATABASE_URL"] = url
            self.local_database = name
            return f"PostgreSQL on {self.local_server}, fresh database {name} (dropped at the end)"
        try:
            self.database = EmbeddedPostgres().start()
            self.env["DATABASE_URL"] = self.database.url
        except Exception as exc:  # pgserver's initdb and pg_ctl fail in many ways; each ends the same
            self.database = None
            raise DemoError(
                f"no PostgreSQL: none answered on {self.local_server} and "
                f"the private one (pgserver) did not start ({_first_line(exc)}); set DATABASE_URL"
            ) from None
        return (
            f"private PostgreSQL (pgserver, temporary): DATABASE_URL is unset and none answered on {self.local_server}"
        )

    @property
    def local_server(self) -> str:
        return self.local_postgres.rpartition("@")[2].rpartition("/")[0]

    def demo_rules(self) -> Path:
        """The shipped rules with SLAs of minutes, so that escalations happen while the demo runs."""
        import yaml

        rules = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
        rules["sla_hours"] = dict(DEMO_SLA_HOURS)
        rules["sla_default_hours"] = DEMO_SLA_DEFAULT_HOURS
        path = self.workdir / "rules.yaml"
        path.write_text(
            "# The demo's rules: rules/default.yaml with SLAs of minutes (written by clientpulse demo).\n"
            + yaml.safe_dump(rules, sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
        return path

    def demo_tokens(self) -> list[dict[str, Any]]:
        """New random tokens for the demo people: the file for people, the hashes for the sink."""
        people = [{**person, "token": secrets.token_urlsafe(24)} for person in DEMO_PEOPLE]
        path = self.workdir / "tokens.json"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(json.dumps(people, indent=2) + "\n", encoding="utf-8")
        self.people = people
        entries = []
        for person in people:
            entry = {k: v for k, v in person.items() if k != "token"}
            entry["hash"] = hash_token(person["token"], log2_n=12)
            entries.append(entry)
        return entries

    def sink_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    async def announce_workbench(self, stop: asyncio.Event, timeout: float = 90.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if await loop.run_in_executor(None, self.sink_ready):
                self.say(f"workbench  http://127.0.0.1:{self.api_port}/")
                first = self.people[0]
                self.say(
                    f"sign in   open the address and paste a token from {self.workdir / 'tokens.json'} "
                    f"(e.g. {first['name']}, {first['role']} {first['rm_id']}: {first['token']})"
                )
                return
            await asyncio.sleep(0.5)

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            python_cmd(*args), env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.children.append(proc)
        self.say(f"{name:<9} started (pid {proc.pid}, log {self.workdir / (name + '.log')})")

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            terminate_group(proc)
        self.children.clear()
        if self.database is not None:
            self.database.stop()
        if self.local_database is not None:
            asyncio.run(drop_database(self.local_postgres, self.local_database))
            self.local_database = None
        if self.broker is not None:
            self.broker.stop()

    def worker_status(self, port: int | None = None) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port or self.worker_port}/status", timeout=1) as resp:
                return dict(json.loads(resp.read()))
        except OSError:
            return {}

    async def tally_notifications(self, stop: asyncio.Event) -> None:
        """Per RM: the alerts pushed at once and those sent in a digest (the rest wait for it)."""
        settings = load_settings()
        consumer = AIOKafkaConsumer(
            settings.notifications_topic,
            settings.digests_topic,
            **client_kwargs(settings),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for message in messages:
                        record = orjson.loads(message.value)
                        rm = record.get("rm_id") or "unassigned"
                        if record.get("kind") == "push":
                            self.pushed_by_rm[rm].add(record["alert_id"])
                        elif record.get("kind") == "digest":
                            self.digested_by_rm[rm].update(record.get("alert_ids", ()))
        finally:
            await consumer.stop()

    def rm_table(self) -> str:
        """Each RM's alerts: pushed at once, sent in a digest, waiting for the next digest."""
        rows = [f"{'rm':<12} {'alerts':>7} {'pushed':>7} {'digested':>9} {'waiting':>8}"]
        for rm in sorted(self.alerts_by_rm, key=lambda r: (r == "unassigned", r)):
            alerts = self.alerts_by_rm[rm]
            pushed = len(self.pushed_by_rm[rm] & alerts)
            digested = len(self.digested_by_rm[rm] & alerts)
            rows.append(f"{rm:<12} {len(alerts):>7} {pushed:>7} {digested:>9} {len(alerts) - pushed - digested:>8}")
        return "\n".join(rows)

    async def print_alerts(self, stop: asyncio.Event) -> None:
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("KAFKA_", "CLIENTPULSE_"))})
        settings = load_settings()
        consumer = AIOKafkaConsumer(
            settings.alerts_topic,
            **client_kwargs(settings),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        alert = orjson.loads(message.value)
                        if str(alert.get("detected_at", "")) < self.started.isoformat():
                            continue  # an earlier run's alert on a long-lived broker
                        self.alerts += 1
                        self.alerts_by_rm[alert.get("rm_id") or "unassigned"].add(str(alert.get("alert_id")))
                        self.say(format_alert(alert, self.colour))
        finally:
            await consumer.stop()

    async def progress(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), PROGRESS_SECONDS)
            status = await asyncio.get_running_loop().run_in_executor(None, self.worker_status)
            processed = status.get("processed", "-") if status else "starting"
            held = ", ".join(f"{reason} {n}" for reason, n in sorted((status.get("suppressed") or {}).items()))
            pushed = sum(len(v) for v in self.pushed_by_rm.values())
            digested = sum(len(v) for v in self.digested_by_rm.values())
            self.say(
                f"-- events sent {self.sent}, processed {processed}, alerts {self.alerts}"
                + (f", held back: {held}" if held else "")
                + f"; pushed {pushed}, in digests {digested}, waiting {self.alerts - pushed - digested}"
            )

    async def wait_worker_ready(self, stop: asyncio.Event, timeout: float = 90.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if (await loop.run_in_executor(None, self.worker_status)).get("ready"):
                self.say("worker    ready; the synthetic bank starts now")
                return
            if any(p.poll() is not None for p in self.children):
                return
            await asyncio.sleep(0.5)

    async def main(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("KAFKA_", "CLIENTPULSE_"))})
        await ensure_topics(load_settings())
        self.spawn("worker", "worker")
        notifier_env = {
            **self.env,
            "CLIENTPULSE_WEB_PORT": str(self.notifier_port),
            "CLIENTPULSE_DATA_DIR": str(self.workdir / "notifier-data"),
        }
        self.spawn("notifier", "notifier", env=notifier_env)
        self.spawn("sink", "sink")

        def on_sent(n: int) -> None:
            self.sent = n

        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.announce_workbench(stop)),
            asyncio.create_task(self.print_alerts(stop)),
            asyncio.create_task(self.tally_notifications(stop)),
            asyncio.create_task(self.progress(stop)),
        ]
        await self.wait_worker_ready(stop)
        feeding = asyncio.Event()  # set: the synthetic bank stops; the rest goes on until `stop`
        feed = asyncio.create_task(
            produce_live(
                load_settings(),
                self.args.clients,
                self.args.rate,
                None,
                7,
                feeding,
                on_sent,
                2.0,
                HISTORY_DAYS,
                unassigned_every=UNASSIGNED_EVERY,
            )
        )
        deadline = None if self.args.duration is None else time.monotonic() + self.args.duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if any(p.poll() is not None for p in self.children):
                failed = next(p for p in self.children if p.poll() is not None)
                self.say(f"a child process exited with {failed.returncode}; see the logs in {self.workdir}")
                stop.set()
                break
            await asyncio.sleep(0.25)
        feeding.set()
        await asyncio.gather(feed, return_exceptions=True)
        if not stop.is_set():
            await self.settle(loop)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        status = await loop.run_in_executor(None, self.worker_status)
        self.say(f"-- done: events sent {self.sent}, processed {status.get('processed', '-')}, alerts {self.alerts}")
        self.say("-- per RM (budget and quiet hours from the rules file; digests go out at digest_at):")
        self.say(self.rm_table())
        return 0

    async def settle(self, loop: asyncio.AbstractEventLoop, timeout: float = 15.0) -> None:
        """Once the bank stopped: until the alerts stop coming and the notifier has decided them all."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            status = await loop.run_in_executor(None, self.worker_status, self.notifier_port)
            decided = int(status.get("decided", 0))
            if decided >= self.alerts and self.alerts == seen:
                return
            seen = self.alerts
            await asyncio.sleep(1.0)


def run_demo(args: argparse.Namespace) -> int:
    demo = Demo(args)
    try:
        demo.start_services()
        return asyncio.run(demo.main())
    except DemoError as exc:
        print(f"clientpulse demo: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        demo.stop_all()
